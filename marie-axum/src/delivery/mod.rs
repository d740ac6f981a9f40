//! Per-client delivery: a bounded queue per client ([`Outbox`]) that merges chunks instead of
//! dropping them, resumes from the [`StreamLog`](marie_core::StreamLog), and carries everything
//! a socket is sent in answer to its own events.
//!
//! socketioxide gives every socket a fixed buffer (`max_buffer_size`, 128 packets) and an
//! `emit` that fails with `InternalChannelFull` when it is full: the packet is lost for that
//! socket, without a word. A chunk that goes straight into the buffer may find it full, and so
//! may the ack of a client event when chunks have filled it. So nothing MARIE sends to one
//! socket goes straight into that buffer: an answer's [`StreamEvent`]s, the replies to a
//! client's events (its `error`, `joined`, `left`, its ack) and the notices of its connection
//! (`connected`, `reconnected`) all go through the socket's outbox, in order. (Presence
//! events, `user_joined` / `user_left`, are room broadcasts of socketioxide: a client whose
//! buffer is full misses them; `joined.members` is the authority.)
//!
//! ## The path of a stream event
//!
//! The [`SocketIoSink`] hands each event of an answer to the [`Hub`], which pushes it to the
//! outbox of every follower on this node (every socket in the conversation's room, every SSE
//! response following the stream) and publishes it to the other nodes over the control bus.
//! Pushing never waits. In a room of a few, an event for a follower with nothing queued is
//! emitted on the spot by the answer's task; the chunks of a burst are held and sent as one
//! frame when the answer's task flushes (the burst protocol: `marie_core::StreamSink`'s
//! module documentation), once 16 are held, or once one has waited
//! [`DeliveryConfig::burst_gap`]. Otherwise (a big room, a burst from another node, a full
//! socketioxide buffer) a writer task, started when something is queued, takes items off the
//! outbox and emits them. When it finds 16 or more waiting, it sends the consecutive chunks
//! among them as one (content joined, `seq` = the last merged, `first_seq` = the first).
//! While socketioxide's buffer is full, the queue grows up to [`DeliveryConfig::queue_len`]
//! items and from then on each new chunk of a stream is merged into the last one queued. A
//! client stalled longer than [`DeliveryConfig::max_stall`], or with more than
//! [`DeliveryConfig::max_queued_bytes`] waiting, is evicted: its queue is freed and it is
//! disconnected (at the latest by the next Engine.IO ping, which fails on a full buffer); it
//! can reconnect and resume.
//!
//! ## Resuming
//!
//! A resume (`resume_stream`, SSE `Last-Event-ID`) follows the rule of the log: the follower
//! first *holds* the stream's live events, then reads the log, queues the events after the
//! position, and then releases what it held, dropping by `seq` what the log already gave.
//! Nothing is missed and nothing is sent twice. The same happens when a live chunk skips
//! positions the follower never got (a message between nodes was lost): the chunk that shows
//! the gap is held, and the gap is filled from the log before it. A socket that leaves a
//! conversation forgets its streams: if it joins again, it gets the live tail from there, and
//! resumes to fill what it missed (`docs/protocol.md` section 3).
//!
//! ## Layout
//!
//! - `out.rs`: [`Out`], what a follower is sent: a stream event or a reply.
//! - `outbox.rs`: [`Outbox`], one follower's queue: merging, bursts, resumes, eviction.
//! - `hub.rs`: [`Hub`], the followers of this node and the control bus.
//! - `sink.rs`: [`SocketIoSink`], the engine's `StreamSink`.
//! - `writer.rs`: the task that writes a socket's outbox out while something is queued.
//! - `resume.rs`: resuming a follower from the stream log.
//!
//! [`StreamEvent`]: marie_core::StreamEvent

mod hub;
mod out;
mod outbox;
mod resume;
mod sink;
mod writer;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub(crate) use hub::{Hub, NoticeHandler, SocketOutbox};
pub(crate) use out::{Emitted, Out, Reply};
pub(crate) use outbox::{Flusher, Outbox};
pub(crate) use resume::resume;
pub use sink::SocketIoSink;

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
    /// How long a reconnected socket's running answers wait for its `resume_stream` (3 s):
    /// their live events are held meanwhile, so that a client that appends what it gets sees
    /// each position once, in order (`docs/protocol.md` section 1). Past it, what was held
    /// goes out as it is.
    pub restore_hold: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            queue_len: 64,
            max_queued_bytes: 1024 * 1024,
            max_stall: Duration::from_secs(30),
            burst_gap: Duration::from_millis(1),
            restore_hold: Duration::from_secs(3),
        }
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
