//! Per-client delivery of stream events: a bounded queue per client that merges chunks
//! instead of dropping them, and resumes from the [`StreamLog`](marie_core::StreamLog).
//!
//! socketioxide gives every socket a fixed buffer (`max_buffer_size`, 128 packets) and an
//! `emit` that fails with `InternalChannelFull` when it is full: the event is lost for that
//! socket. So stream events (`stream_start`, `stream_chunk`, `stream_end`, `stream_error`) do
//! not go through room broadcasts. The [`Hub`] hands each one to an [`Outbox`] per local
//! follower (every socket in the conversation's room, every SSE response following the
//! stream). Pushing never waits. In a room of a few, an event for a follower with nothing
//! queued is emitted on the spot by the answer's task; chunks that come in a burst (less than
//! [`DeliveryConfig::burst_gap`] apart) are held and sent as one frame when the answer's task
//! has nothing more ready ([`StreamSink::flush`](marie_core::StreamSink::flush)), once 16 are
//! held, or once one has waited `burst_gap`. Otherwise (a big room, a burst from another
//! node, a full socketioxide buffer) a writer task, started when something is queued, takes
//! items off the outbox and emits them. When it finds 16 or more waiting, it sends the
//! consecutive chunks among them as one (content joined, `seq` = the last merged,
//! `first_seq` = the first). While socketioxide's buffer is full,
//! the queue grows up to [`DeliveryConfig::queue_len`] items and from then on each new chunk
//! of a stream is merged into the last queued one. A client stalled longer than
//! [`DeliveryConfig::max_stall`], or with more than [`DeliveryConfig::max_queued_bytes`]
//! waiting, is evicted: its queue is freed and it is disconnected (at the latest by the next
//! Engine.IO ping, which fails on a full buffer); it can reconnect and resume.
//!
//! Resuming (`resume_stream`, SSE `Last-Event-ID`, or a gap seen on a live stream) follows
//! the rule of the log: the follower first *holds* the stream's live events, then reads the
//! log, queues the chunks after the position, and then releases what it held, dropping by
//! `seq` what the log already gave. Nothing is missed and nothing is sent twice.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use marie_core::{
    ConversationId, LoggedChunk, LoggedEnd, StreamChunk, StreamId, StreamLog, check_resume,
};
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::sync::Notify;

/// Limits of per-client delivery. `Default` fits a public chat.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DeliveryConfig {
    /// Items queued per client beyond which each new chunk is merged into the last one
    /// queued (64). The client's writer already merges the consecutive chunks it finds
    /// once 16 (or `queue_len`, if smaller) are waiting.
    pub queue_len: usize,
    /// Bytes of content queued per client beyond which it is evicted (1 MiB).
    pub max_queued_bytes: usize,
    /// How long a client may accept nothing before it is evicted (30 s).
    pub max_stall: Duration,
    /// Chunks for one client that come closer together than this are a burst (1 ms): a
    /// model far faster than any reader, or a busy node. They are sent merged rather than
    /// one frame each, and none is held back longer than this. A model's tokens come 5 to
    /// 50 ms apart, so each goes out on its own, at once. `Duration::ZERO` turns merging of
    /// bursts off (a writer that falls behind still merges).
    pub burst_gap: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            queue_len: 64,
            max_queued_bytes: 1024 * 1024,
            max_stall: Duration::from_secs(30),
            burst_gap: Duration::from_millis(1),
        }
    }
}

/// How many items a client's writer must find waiting before it merges the consecutive
/// chunks among them into one frame. Measured (`docs/benchmarks.md`, fan-out): merging only
/// at a full queue (64) left 70 to 180 frames per member for 200 chunks and halved the
/// delivered rate in some runs; merging from 16 waiting sends 5 to 30. Lower would merge
/// chunks that a healthy client is only a moment behind on.
const MERGE_BEHIND: usize = 16;

/// What one follower gets.
#[derive(Clone, Debug)]
pub(crate) enum Out {
    /// One chunk, or several consecutive ones merged. Shared by every follower of a live
    /// chunk, and serialized once for all of them; a merge makes the follower's own copy.
    Chunk(Arc<Chunk>),
    /// `stream_start`, `stream_end` or `stream_error`. The payload (an end carries the whole
    /// answer) is shared by every follower, not copied.
    Event {
        stream_id: String,
        name: String,
        payload: Arc<Value>,
    },
}

/// A chunk as sent.
#[derive(Debug)]
pub(crate) struct Chunk {
    conversation_id: String,
    stream_id: String,
    first_seq: u64,
    seq: u64,
    content: String,
    tokens_used: u64,
    /// The payload, serialized by the first follower that sends it.
    json: OnceLock<Box<RawValue>>,
}

impl Clone for Chunk {
    fn clone(&self) -> Self {
        Self {
            conversation_id: self.conversation_id.clone(),
            stream_id: self.stream_id.clone(),
            first_seq: self.first_seq,
            seq: self.seq,
            content: self.content.clone(),
            tokens_used: self.tokens_used,
            json: OnceLock::new(),
        }
    }
}

/// A chunk's payload as sent, borrowed: serialized straight into the packet, with no
/// intermediate `Value`. A merged chunk says where it starts (`first_seq`).
#[derive(Serialize)]
struct ChunkPayload<'a> {
    conversation_id: &'a str,
    stream_id: &'a str,
    seq: u64,
    content: &'a str,
    done: bool,
    tokens_used: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_seq: Option<u64>,
}

impl Chunk {
    fn payload(&self) -> ChunkPayload<'_> {
        ChunkPayload {
            conversation_id: &self.conversation_id,
            stream_id: &self.stream_id,
            seq: self.seq,
            content: &self.content,
            done: false,
            tokens_used: self.tokens_used,
            first_seq: (self.first_seq != self.seq).then_some(self.first_seq),
        }
    }

    /// The payload serialized, once for every follower that shares this chunk.
    fn json(&self) -> Option<&RawValue> {
        if let Some(raw) = self.json.get() {
            return Some(raw);
        }
        let raw = serde_json::value::to_raw_value(&self.payload()).ok()?;
        Some(self.json.get_or_init(|| raw))
    }
}

impl Out {
    /// Builds an item from a stream event's name and payload; `None` for anything else.
    pub(crate) fn from_event(name: &str, payload: &Value) -> Option<Out> {
        let stream_id = payload.get("stream_id")?.as_str()?.to_owned();
        match name {
            "stream_chunk" => {
                let seq = payload.get("seq")?.as_u64()?;
                Some(Out::Chunk(Arc::new(Chunk {
                    conversation_id: payload.get("conversation_id")?.as_str()?.to_owned(),
                    stream_id,
                    first_seq: seq,
                    seq,
                    content: payload.get("content")?.as_str()?.to_owned(),
                    tokens_used: payload.get("tokens_used").and_then(Value::as_u64)?,
                    json: OnceLock::new(),
                })))
            }
            "stream_start" | "stream_end" | "stream_error" => Some(Out::Event {
                stream_id,
                name: name.to_owned(),
                payload: Arc::new(payload.clone()),
            }),
            _ => None,
        }
    }

    /// A live chunk, as the engine emits it.
    pub(crate) fn from_chunk(chunk: StreamChunk) -> Out {
        Out::Chunk(Arc::new(Chunk {
            conversation_id: chunk.conversation_id.to_string(),
            stream_id: chunk.stream_id.to_string(),
            first_seq: chunk.seq,
            seq: chunk.seq,
            content: chunk.content,
            tokens_used: chunk.tokens_used,
            json: OnceLock::new(),
        }))
    }

    fn chunk(conversation: &ConversationId, stream: &StreamId, c: LoggedChunk) -> Out {
        Out::Chunk(Arc::new(Chunk {
            conversation_id: conversation.to_string(),
            stream_id: stream.to_string(),
            first_seq: c.seq,
            seq: c.seq,
            content: c.content,
            tokens_used: c.tokens_used,
            json: OnceLock::new(),
        }))
    }

    pub(crate) fn stream_id(&self) -> &str {
        match self {
            Out::Chunk(c) => &c.stream_id,
            Out::Event { stream_id, .. } => stream_id,
        }
    }

    pub(crate) fn name(&self) -> &str {
        match self {
            Out::Chunk(_) => "stream_chunk",
            Out::Event { name, .. } => name,
        }
    }

    /// The `seq` an SSE `id:` carries: the chunk's, or the stream's last for its end.
    pub(crate) fn seq(&self) -> Option<u64> {
        match self {
            Out::Chunk(c) => Some(c.seq),
            Out::Event { .. } => None,
        }
    }

    pub(crate) fn is_terminal(&self) -> bool {
        matches!(self, Out::Event { name, .. } if name == "stream_end" || name == "stream_error")
    }

    /// The payload to send: shared, not copied, and a chunk's serialized once for all its
    /// followers. A merged chunk says where it starts (`first_seq`).
    pub(crate) fn wire(&self) -> Wire<'_> {
        Wire(self)
    }

    /// The payload as JSON text.
    pub(crate) fn to_json_string(&self) -> String {
        match self {
            Out::Chunk(c) => match c.json() {
                Some(raw) => raw.get().to_owned(),
                None => json!(c.payload()).to_string(),
            },
            Out::Event { payload, .. } => payload.to_string(),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            // Content only, so that merging keeps the count exact; the number of items is
            // bounded by `queue_len` besides.
            Out::Chunk(c) => c.content.len(),
            // Shared by every follower: what one follower adds is the handle.
            Out::Event { .. } => 64,
        }
    }

    /// Appends `next` when it continues this chunk.
    fn merge(&mut self, next: &Out) -> bool {
        match (self, next) {
            (Out::Chunk(this), Out::Chunk(next))
                if this.stream_id == next.stream_id && this.seq + 1 == next.first_seq =>
            {
                // Shared: copied first. Ours: its serialized payload no longer holds.
                let this = Arc::make_mut(this);
                this.content.push_str(&next.content);
                this.seq = next.seq;
                this.tokens_used = next.tokens_used;
                this.json = OnceLock::new();
                true
            }
            _ => false,
        }
    }
}

/// An [`Out`]'s payload, for `emit`.
pub(crate) struct Wire<'a>(&'a Out);

impl Serialize for Wire<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            // Shared by other followers: serialized once for all. A follower's own (merged)
            // chunk goes straight into its packet.
            Out::Chunk(c) if Arc::strong_count(c) > 1 || c.json.get().is_some() => match c.json() {
                Some(raw) => raw.serialize(serializer),
                None => c.payload().serialize(serializer),
            },
            Out::Chunk(c) => c.payload().serialize(serializer),
            Out::Event { payload, .. } => payload.serialize(serializer),
        }
    }
}

/// Where a follower stands in one stream.
#[derive(Default)]
struct StreamPos {
    /// The last `seq` queued; chunks up to it are duplicates.
    last: u64,
    /// The terminal event was queued.
    ended: bool,
    /// While resuming: live items held until the log has been read.
    held: Option<Vec<Out>>,
}

#[derive(Default)]
struct OutboxState {
    /// A writer task is running (outboxes with a [`StartWriter`] only).
    writing: bool,
    /// What is queued is held for the producer's [`Outbox::flush`] (since then), and no
    /// writer is started for it.
    held_since: Option<Instant>,
    /// When a chunk last went straight out (see [`Outbox::push_or_send`]).
    last_direct: Option<Instant>,
    queue: VecDeque<Out>,
    streams: HashMap<String, StreamPos>,
    /// Streams in the order first seen, to bound `streams`.
    order: VecDeque<String>,
}

/// Whether the producer of a pushed item flushes the follower when its burst is over (see
/// [`Outbox::push_or_send`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Burst {
    /// Chunks of a burst go to the writer task.
    ToWriter,
    /// Chunks of a burst are held for the producer's [`Outbox::flush`].
    Held,
}

/// How to send an item straight to the client (`true` if it went), and what to do with a
/// burst.
type Direct<'a> = (&'a dyn Fn(&Out) -> bool, Burst);

/// What a push found.
pub(crate) enum Pushed {
    Queued,
    /// The follower now holds a burst: the producer must [`Outbox::flush`] it.
    Held,
    /// The chunk skips positions after `after` that this follower never got (a cross-node
    /// message was lost): fill from the log.
    Gap {
        stream_id: String,
        after: u64,
    },
}

/// Starts the task that writes an outbox out, given the outbox.
pub(crate) type StartWriter = Box<dyn Fn(Arc<Outbox>) + Send + Sync>;

/// One follower's queue. Bounded: past `queue_len` items chunks merge; past
/// `max_queued_bytes` the follower is evicted.
///
/// Its consumer either waits on it ([`next`](Self::next), an SSE response), or is a writer
/// task started when something is queued and gone once the queue is empty
/// ([`take`](Self::take), a socket): an idle connection holds no task of MARIE's.
pub(crate) struct Outbox {
    state: Mutex<OutboxState>,
    notify: Notify,
    start_writer: Option<StartWriter>,
    this: std::sync::Weak<Outbox>,
    bytes: AtomicUsize,
    closed: AtomicBool,
    evicted: AtomicBool,
    config: DeliveryConfig,
    /// Only this stream (an SSE response), or every stream of the room (a socket).
    only: Option<String>,
    stats: Arc<Stats>,
}

impl Outbox {
    /// An outbox read with [`next`](Self::next).
    pub(crate) fn new(
        config: DeliveryConfig,
        only: Option<String>,
        stats: Arc<Stats>,
    ) -> Arc<Self> {
        Self::build(config, only, stats, None)
    }

    /// An outbox that calls `start_writer` whenever something is queued and no writer runs;
    /// the writer reads it with [`take`](Self::take).
    pub(crate) fn with_writer(
        config: DeliveryConfig,
        stats: Arc<Stats>,
        start_writer: StartWriter,
    ) -> Arc<Self> {
        Self::build(config, None, stats, Some(start_writer))
    }

    fn build(
        config: DeliveryConfig,
        only: Option<String>,
        stats: Arc<Stats>,
        start_writer: Option<StartWriter>,
    ) -> Arc<Self> {
        Arc::new_cyclic(|this| Self {
            state: Mutex::default(),
            notify: Notify::new(),
            start_writer,
            this: this.clone(),
            bytes: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            config,
            only,
            stats,
        })
    }

    /// Under the lock, after queueing: whether a writer must be started (and if so, claims
    /// the role, so that exactly one runs).
    fn claim_writer(&self, st: &mut OutboxState) -> bool {
        let claim = self.start_writer.is_some()
            && !st.writing
            && st.held_since.is_none()
            && !st.queue.is_empty();
        if claim {
            st.writing = true;
        }
        claim
    }

    fn start_writer(&self, claimed: bool) {
        if let (true, Some(start), Some(this)) = (claimed, &self.start_writer, self.this.upgrade())
        {
            start(this);
        }
    }

    fn state(&self) -> MutexGuard<'_, OutboxState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn wants(&self, stream_id: &str) -> bool {
        self.only.as_deref().is_none_or(|s| s == stream_id)
    }

    pub(crate) fn is_open(&self) -> bool {
        !self.closed.load(Ordering::Acquire) && !self.evicted.load(Ordering::Acquire)
    }

    /// Content bytes queued (and in flight).
    pub(crate) fn queued_bytes(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }

    /// Queues a live event for this follower. Never waits.
    pub(crate) fn push(&self, out: Out) -> Pushed {
        self.push_with(out, None)
    }

    /// As [`push`](Self::push), but when nothing is queued or being written, `send` is tried
    /// first, under the lock (so nothing can overtake it): it returns whether the item went
    /// out. That saves a writer task's round trip through the scheduler for a client that
    /// keeps up.
    ///
    /// With `Burst::Held`, the caller promises to call [`flush`](Self::flush) when its burst
    /// is over: chunks of a burst are then held for it (and sent merged) instead of going
    /// through the writer task, except that [`MERGE_BEHIND`] held items, or one held for
    /// [`DeliveryConfig::burst_gap`], go out at once.
    pub(crate) fn push_or_send(
        &self,
        out: Out,
        send: &dyn Fn(&Out) -> bool,
        burst: Burst,
    ) -> Pushed {
        self.push_with(out, Some((send, burst)))
    }

    fn push_with(&self, out: Out, send: Option<Direct<'_>>) -> Pushed {
        if !self.is_open() || !self.wants(out.stream_id()) {
            return Pushed::Queued;
        }
        let mut st = self.state();
        let pushed = self.push_locked(&mut st, out, true, send);
        let claimed = self.claim_writer(&mut st);
        drop(st);
        self.after_push();
        self.start_writer(claimed);
        pushed
    }

    /// Sends what a burst left held (see [`push_or_send`](Self::push_or_send)), merged.
    /// What `send` refuses (socketioxide's buffer is full) goes to the writer task.
    pub(crate) fn flush(&self, send: &dyn Fn(&Out) -> bool) {
        let mut st = self.state();
        if st.held_since.is_some() && !st.writing {
            self.flush_locked(&mut st, send);
        }
        let claimed = self.claim_writer(&mut st);
        drop(st);
        self.start_writer(claimed);
    }

    fn flush_locked(&self, st: &mut OutboxState, send: &dyn Fn(&Out) -> bool) {
        st.held_since = None;
        while let Some(mut out) = st.queue.pop_front() {
            self.merge_queued(st, &mut out);
            if !send(&out) {
                st.queue.push_front(out);
                return;
            }
            self.sent(&out);
            if matches!(out, Out::Chunk(_)) {
                st.last_direct = Some(Instant::now());
            }
        }
    }

    fn push_locked(
        &self,
        st: &mut OutboxState,
        out: Out,
        live: bool,
        send: Option<Direct<'_>>,
    ) -> Pushed {
        let key = out.stream_id();
        if !st.streams.contains_key(key) {
            st.order.push_back(key.to_owned());
            while st.order.len() > 64 {
                if let Some(old) = st.order.pop_front() {
                    st.streams.remove(&old);
                }
            }
            st.streams.insert(key.to_owned(), StreamPos::default());
        }
        let Some(pos) = st.streams.get_mut(key) else {
            return Pushed::Queued; // not reached: inserted above
        };
        if live && let Some(held) = &mut pos.held {
            held.push(out);
            return Pushed::Queued;
        }
        let mut gap = None;
        match &out {
            Out::Chunk(c) => {
                if c.seq <= pos.last {
                    return Pushed::Queued; // already queued: a duplicate
                }
                if live && pos.last > 0 && c.first_seq > pos.last + 1 {
                    gap = Some(pos.last);
                }
                pos.last = c.seq;
            }
            Out::Event { .. } if out.is_terminal() => {
                if pos.ended {
                    return Pushed::Queued;
                }
                pos.ended = true;
            }
            Out::Event { .. } => {}
        }
        // Straight out only when nothing of this follower's is waiting or in a writer's
        // hands, not across a gap (the log fills it first), and not in a burst: chunks that
        // come less than `burst_gap` apart are merged, by the writer or (held) by the
        // producer's flush.
        let is_chunk = matches!(out, Out::Chunk(_));
        let gap = gap.map(|after| (out.stream_id().to_owned(), after));
        let gap_limit = self.config.burst_gap;
        let in_burst = is_chunk && st.last_direct.is_some_and(|t| t.elapsed() < gap_limit);
        let direct = send.filter(|_| gap.is_none() && !st.writing);
        match direct {
            Some((send, _)) if st.queue.is_empty() && !in_burst && send(&out) => {
                if is_chunk {
                    st.last_direct = Some(Instant::now());
                }
            }
            Some((send, Burst::Held)) if in_burst || st.held_since.is_some() => {
                self.enqueue(st, out);
                let started = st.held_since.is_none();
                let since = *st.held_since.get_or_insert_with(Instant::now);
                if st.queue.len() >= MERGE_BEHIND || since.elapsed() >= gap_limit {
                    self.flush_locked(st, send);
                } else if started && gap.is_none() {
                    return Pushed::Held;
                }
            }
            _ => {
                // To the writer, which takes what is held too.
                st.held_since = None;
                self.enqueue(st, out);
            }
        }
        match gap {
            Some((stream_id, after)) => Pushed::Gap { stream_id, after },
            None => Pushed::Queued,
        }
    }

    fn enqueue(&self, st: &mut OutboxState, out: Out) {
        let bytes = out.bytes();
        if st.queue.len() >= self.config.queue_len.max(1)
            && let Some(back) = st.queue.back_mut()
            && back.merge(&out)
        {
            self.stats.merged.fetch_add(1, Ordering::Relaxed);
            self.bytes.fetch_add(bytes, Ordering::AcqRel);
            return;
        }
        st.queue.push_back(out);
        self.bytes.fetch_add(bytes, Ordering::AcqRel);
    }

    fn after_push(&self) {
        let bytes = self.queued_bytes();
        self.stats.observe_bytes(bytes);
        if bytes > self.config.max_queued_bytes {
            self.evict("too much queued");
        }
        self.notify.notify_one();
    }

    /// Starts a resume of `stream_id`: what is queued of it and not yet sent is dropped, and
    /// its live events are held until [`finish_resume`](Self::finish_resume).
    pub(crate) fn begin_resume(&self, stream_id: &str) {
        let mut st = self.state();
        let mut freed = 0;
        st.queue.retain(|o| {
            let keep = o.stream_id() != stream_id;
            if !keep {
                freed += o.bytes();
            }
            keep
        });
        self.bytes.fetch_sub(freed, Ordering::AcqRel);
        let pos = st.streams.entry(stream_id.to_owned()).or_default();
        pos.held = Some(pos.held.take().unwrap_or_default());
    }

    /// Queues what the log gave (the chunks after `after_seq`, then its end), then releases
    /// the held live events, dropping those the log already gave.
    pub(crate) fn finish_resume(
        &self,
        conversation: &ConversationId,
        stream: &StreamId,
        after_seq: u64,
        chunks: Vec<LoggedChunk>,
        end: Option<LoggedEnd>,
    ) {
        let key = stream.to_string();
        let mut st = self.state();
        let held = {
            let pos = st.streams.entry(key.clone()).or_default();
            pos.last = after_seq;
            pos.ended = false;
            pos.held.take().unwrap_or_default()
        };
        for c in chunks {
            self.push_locked(&mut st, Out::chunk(conversation, stream, c), false, None);
        }
        if let Some(end) = end {
            let out = Out::Event {
                stream_id: key,
                name: end.event,
                payload: Arc::new(end.payload),
            };
            self.push_locked(&mut st, out, false, None);
        }
        for out in held {
            self.push_locked(&mut st, out, false, None);
        }
        let claimed = self.claim_writer(&mut st);
        drop(st);
        self.after_push();
        self.start_writer(claimed);
    }

    /// Gives up a resume: the held live events go out as they are.
    pub(crate) fn abort_resume(&self, stream_id: &str) {
        let mut st = self.state();
        let held = st
            .streams
            .get_mut(stream_id)
            .and_then(|p| p.held.take())
            .unwrap_or_default();
        for out in held {
            self.push_locked(&mut st, out, false, None);
        }
        let claimed = self.claim_writer(&mut st);
        drop(st);
        self.after_push();
        self.start_writer(claimed);
    }

    /// The next item, waiting for one; `None` once closed or evicted. When
    /// [`MERGE_BEHIND`] or more items wait, the chunks queued right behind it that continue it
    /// are merged into it: such a client is behind by that much already, and one frame costs
    /// the server (an encoding, a channel push, a write) and the client far less than many.
    /// Below that, each chunk keeps its own frame.
    pub(crate) async fn next(&self) -> Option<Out> {
        loop {
            let notified = self.notify.notified();
            if !self.is_open() {
                return None;
            }
            if let Some(out) = self.pop(&mut self.state()) {
                return Some(out);
            }
            notified.await;
        }
    }

    /// For the writer task: the next item, or `None` when there is none (the task ends and
    /// the next push starts another) or the outbox is closed or evicted.
    pub(crate) fn take(&self) -> Option<Out> {
        if !self.is_open() {
            return None;
        }
        let mut st = self.state();
        let out = self.pop(&mut st);
        if out.is_none() {
            st.writing = false;
        }
        out
    }

    fn pop(&self, st: &mut OutboxState) -> Option<Out> {
        let full = st.queue.len() >= MERGE_BEHIND.min(self.config.queue_len.max(1));
        let mut out = st.queue.pop_front()?;
        if full {
            self.merge_queued(st, &mut out);
        }
        Some(out)
    }

    fn merge_queued(&self, st: &mut OutboxState, out: &mut Out) {
        while let Some(front) = st.queue.front() {
            if !out.merge(front) {
                break;
            }
            st.queue.pop_front();
            self.stats.merged.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// While `held` cannot be sent: merges the chunks queued right after it into it.
    pub(crate) fn absorb(&self, held: &mut Out) {
        let mut st = self.state();
        self.merge_queued(&mut st, held);
    }

    /// `out` left: it no longer counts against the bound.
    pub(crate) fn sent(&self, out: &Out) {
        self.bytes
            .fetch_sub(out.bytes().min(self.queued_bytes()), Ordering::AcqRel);
    }

    /// Stops delivery and frees the queue.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.clear();
    }

    /// Stops delivery to a client that cannot keep up, and frees its queue.
    pub(crate) fn evict(&self, why: &'static str) {
        if !self.evicted.swap(true, Ordering::AcqRel) {
            tracing::info!(
                why,
                "evicting a client that does not keep up with its stream"
            );
            self.stats.evicted.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("marie_slow_clients_evicted_total").increment(1);
        }
        self.clear();
    }

    pub(crate) fn is_evicted(&self) -> bool {
        self.evicted.load(Ordering::Acquire)
    }

    fn clear(&self) {
        let mut st = self.state();
        st.queue.clear();
        st.held_since = None;
        st.streams.clear();
        st.order.clear();
        self.bytes.store(0, Ordering::Release);
        drop(st);
        self.notify.notify_one();
    }
}

/// Delivery counters of one MARIE layer (see [`MarieHandle::delivery_stats`]).
///
/// [`MarieHandle::delivery_stats`]: crate::MarieHandle::delivery_stats
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeliveryStats {
    /// Chunks merged into an earlier one because a client's queue was full.
    pub merged: u64,
    /// Clients evicted for not keeping up.
    pub evicted: u64,
    /// The most content bytes one client ever had queued.
    pub peak_queued_bytes: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Stats {
    merged: AtomicU64,
    evicted: AtomicU64,
    peak: AtomicU64,
}

impl Stats {
    fn observe_bytes(&self, bytes: usize) {
        self.peak.fetch_max(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> DeliveryStats {
        DeliveryStats {
            merged: self.merged.load(Ordering::Relaxed),
            evicted: self.evicted.load(Ordering::Relaxed),
            peak_queued_bytes: self.peak.load(Ordering::Relaxed),
        }
    }
}

/// Chunks read from the log per round trip.
const PAGE: usize = 1000;

/// Resumes `stream` for `outbox` from `after_seq`: holds its live events, reads the log to
/// its end, queues what it gave, releases what was held. The caller has checked access.
pub(crate) async fn resume(
    log: &Arc<dyn StreamLog>,
    outbox: &Outbox,
    conversation: &ConversationId,
    stream: &StreamId,
    after_seq: u64,
) -> Result<(), marie_core::Error> {
    let key = stream.to_string();
    outbox.begin_resume(&key);
    let mut chunks = Vec::new();
    let mut pos = after_seq;
    let end = loop {
        let read = log
            .read(stream, pos, PAGE)
            .await
            .map_err(marie_core::Error::from)
            .and_then(|r| check_resume(r, pos));
        let read = match read {
            Ok(r) => r,
            Err(e) => {
                outbox.abort_resume(&key);
                return Err(e);
            }
        };
        let full = read.chunks.len() >= PAGE;
        if let Some(last) = read.chunks.last() {
            pos = last.seq;
        }
        chunks.extend(read.chunks);
        if !full {
            break read.end;
        }
    };
    outbox.finish_resume(conversation, stream, after_seq, chunks, end);
    Ok(())
}

/// Followers by conversation, each with its registration id.
type FollowerMap = HashMap<ConversationId, Vec<(u64, Arc<Outbox>)>>;

/// A follower that is not a socket (an SSE response), registered by conversation.
pub(crate) struct Followers {
    next_id: AtomicU64,
    by_conversation: Mutex<FollowerMap>,
}

impl Default for Followers {
    fn default() -> Self {
        Self {
            next_id: AtomicU64::new(1),
            by_conversation: Mutex::default(),
        }
    }
}

impl Followers {
    fn map(&self) -> MutexGuard<'_, FollowerMap> {
        self.by_conversation
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn add(&self, conversation: &ConversationId, outbox: Arc<Outbox>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.map()
            .entry(conversation.clone())
            .or_default()
            .push((id, outbox));
        id
    }

    pub(crate) fn remove(&self, conversation: &ConversationId, id: u64) {
        let mut map = self.map();
        if let Some(list) = map.get_mut(conversation) {
            list.retain(|(i, _)| *i != id);
            if list.is_empty() {
                map.remove(conversation);
            }
        }
    }

    pub(crate) fn of(&self, conversation: &ConversationId) -> Vec<Arc<Outbox>> {
        self.map()
            .get(conversation)
            .map(|l| l.iter().map(|(_, o)| o.clone()).collect())
            .unwrap_or_default()
    }
}

/// Retries emitting into a full socketioxide buffer: socketioxide offers no way to await
/// room in it, so the writer polls with a short backoff (1 ms doubling to 16 ms) until the
/// item goes out, the client is evicted, or it disconnects.
pub(crate) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(1 << attempt.min(4))
}

/// When a stall began, for [`DeliveryConfig::max_stall`].
pub(crate) fn stalled_too_long(since: Instant, config: &DeliveryConfig) -> bool {
    since.elapsed() > config.max_stall
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Mutex;

    use super::*;

    fn chunk(seq: u64) -> Out {
        Out::Chunk(Arc::new(Chunk {
            conversation_id: "c".into(),
            stream_id: "s".into(),
            first_seq: seq,
            seq,
            content: format!("{seq} "),
            tokens_used: seq,
            json: OnceLock::new(),
        }))
    }

    fn end() -> Out {
        Out::Event {
            stream_id: "s".into(),
            name: "stream_end".into(),
            payload: Arc::new(json!({})),
        }
    }

    /// An outbox whose writer task, if ever started, is counted (and never runs), and the
    /// (first_seq, seq) or event name of each item its `send` took.
    fn outbox(burst_gap: Duration) -> (Arc<Outbox>, Arc<AtomicUsize>) {
        let writers = Arc::new(AtomicUsize::new(0));
        let counted = writers.clone();
        let config = DeliveryConfig {
            burst_gap,
            ..DeliveryConfig::default()
        };
        let start: StartWriter = Box::new(move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
        });
        (Outbox::with_writer(config, Arc::default(), start), writers)
    }

    #[derive(Default)]
    struct Sent(Mutex<Vec<String>>);

    impl Sent {
        fn send(&self, out: &Out) -> bool {
            let item = match out {
                Out::Chunk(c) => format!("{}..{}", c.first_seq, c.seq),
                Out::Event { name, .. } => name.clone(),
            };
            self.0.lock().unwrap().push(item);
            true
        }

        fn take(&self) -> Vec<String> {
            std::mem::take(&mut self.0.lock().unwrap())
        }
    }

    #[test]
    fn a_burst_is_held_for_the_producer_and_sent_merged() {
        let (outbox, writers) = outbox(Duration::from_secs(3600));
        let sent = Sent::default();
        let send = |o: &Out| sent.send(o);
        assert!(matches!(
            outbox.push_or_send(chunk(1), &send, Burst::Held),
            Pushed::Queued
        ));
        assert_eq!(sent.take(), ["1..1"], "the first chunk goes out at once");
        // The next ones come within the burst gap: held, and the first hold says so.
        assert!(matches!(
            outbox.push_or_send(chunk(2), &send, Burst::Held),
            Pushed::Held
        ));
        for seq in 3..=10 {
            assert!(matches!(
                outbox.push_or_send(chunk(seq), &send, Burst::Held),
                Pushed::Queued
            ));
        }
        assert!(sent.take().is_empty());
        outbox.flush(&send);
        assert_eq!(sent.take(), ["2..10"]);
        // MERGE_BEHIND held chunks go out without waiting for the flush.
        for seq in 11..=(10 + MERGE_BEHIND as u64) {
            outbox.push_or_send(chunk(seq), &send, Burst::Held);
        }
        assert_eq!(sent.take(), [format!("11..{}", 10 + MERGE_BEHIND)]);
        // The end of the stream waits behind held chunks, and goes with them.
        outbox.push_or_send(chunk(27), &send, Burst::Held);
        outbox.push_or_send(end(), &send, Burst::Held);
        assert!(sent.take().is_empty());
        outbox.flush(&send);
        assert_eq!(sent.take(), ["27..27", "stream_end"]);
        assert_eq!(
            writers.load(Ordering::SeqCst),
            0,
            "no writer task was needed"
        );
        assert_eq!(outbox.queued_bytes(), 0);
    }

    #[test]
    fn a_burst_nobody_flushes_goes_to_the_writer() {
        let (outbox, writers) = outbox(Duration::from_secs(3600));
        let sent = Sent::default();
        let send = |o: &Out| sent.send(o);
        outbox.push_or_send(chunk(1), &send, Burst::ToWriter);
        outbox.push_or_send(chunk(2), &send, Burst::ToWriter);
        assert_eq!(sent.take(), ["1..1"]);
        assert_eq!(writers.load(Ordering::SeqCst), 1);
        let taken = outbox.take().unwrap();
        assert_eq!(taken.seq(), Some(2));
    }

    #[test]
    fn what_the_socket_refuses_on_a_flush_goes_to_the_writer() {
        let (outbox, writers) = outbox(Duration::from_secs(3600));
        let sent = Sent::default();
        let send = |o: &Out| sent.send(o);
        outbox.push_or_send(chunk(1), &send, Burst::Held);
        outbox.push_or_send(chunk(2), &send, Burst::Held);
        outbox.push_or_send(chunk(3), &send, Burst::Held);
        outbox.flush(&|_: &Out| false);
        assert_eq!(writers.load(Ordering::SeqCst), 1);
        let taken = outbox.take().unwrap();
        assert_eq!((taken.seq(), sent.take().len()), (Some(3), 1));
    }

    #[test]
    fn without_a_burst_gap_every_chunk_goes_out_at_once() {
        let (outbox, writers) = outbox(Duration::ZERO);
        let sent = Sent::default();
        let send = |o: &Out| sent.send(o);
        for seq in 1..=5 {
            outbox.push_or_send(chunk(seq), &send, Burst::Held);
        }
        assert_eq!(sent.take(), ["1..1", "2..2", "3..3", "4..4", "5..5"]);
        assert_eq!(writers.load(Ordering::SeqCst), 0);
    }
}
