//! [`Outbox`]: one follower's queue. Bounded: past `queue_len` items chunks merge; past
//! `max_queued_bytes` the follower is evicted. See the module documentation of
//! [`delivery`](super) for the whole picture.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use marie_core::{ConversationId, StreamEvent, StreamId};
use tokio::sync::Notify;

use super::{DeliveryConfig, Out, Stats};

/// How many items a client's writer must find waiting before it merges the consecutive
/// chunks among them into one frame. Measured (`docs/benchmarks.md`, fan-out): merging only
/// at a full queue (64) left 70 to 180 frames per member for 200 chunks and halved the
/// delivered rate in some runs; merging from 16 waiting sends 5 to 30. Lower would merge
/// chunks that a healthy client is only a moment behind on.
pub(super) const MERGE_BEHIND: usize = 16;

/// How many streams an outbox remembers its position in (the oldest are forgotten first).
const STREAMS_KEPT: usize = 64;

/// Where a follower stands in one stream.
struct StreamPos {
    /// The stream's conversation, to forget it when the follower leaves it.
    conversation: ConversationId,
    /// The last `seq` queued; events up to it are duplicates.
    last: u64,
    /// The terminal event was queued.
    ended: bool,
    /// While resuming: live items held until the log has been read.
    held: Option<Vec<Out>>,
    /// The hold is a restored socket's, waiting for the client to say where it stands
    /// ([`Outbox::hold_restored`]); a resume makes it its own.
    restored: bool,
}

#[derive(Default)]
struct OutboxState {
    /// Items may be sent. A socket's outbox is greeted ([`Outbox::greet`]) once its client
    /// has been sent CONNECT; until then everything waits, in order.
    greeted: bool,
    /// A writer task is running (outboxes with a [`StartWriter`] only).
    writing: bool,
    /// What is queued is held for the producer's [`Outbox::flush`] (since then), and no
    /// writer is started for it.
    held_since: Option<Instant>,
    /// When a chunk last went straight out (see [`Outbox::push_or_send`]).
    last_direct: Option<Instant>,
    queue: VecDeque<Out>,
    streams: HashMap<StreamId, StreamPos>,
    /// Streams in the order first seen, to bound `streams`.
    order: VecDeque<StreamId>,
}

/// Who sends the chunks of a burst a follower holds (see [`Outbox::push_or_send`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flusher {
    /// The follower's writer task: nobody flushes them.
    Writer,
    /// The producer, which calls [`Outbox::flush`] when its burst is over.
    Producer,
}

/// How to send an item straight to the client (`true` if it went), and what to do with a
/// burst.
type Direct<'a> = (&'a dyn Fn(&Out) -> bool, Flusher);

/// What a push found.
pub(crate) enum Pushed {
    Queued,
    /// The follower now holds a burst: the producer must [`Outbox::flush`] it.
    Held,
    /// The chunk skips positions after `after` that this follower never got (a cross-node
    /// message was lost): it is held, and the gap must be filled from the log
    /// ([`resume::fill_gap`](super::resume::fill_gap)).
    Gap {
        stream_id: StreamId,
        after: u64,
    },
}

/// Starts the task that writes an outbox out, given the outbox.
pub(crate) type StartWriter = Box<dyn Fn(Arc<Outbox>) + Send + Sync>;

/// One follower's queue.
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
    /// Only this stream (an SSE response), or every stream of the rooms (a socket).
    only: Option<StreamId>,
    stats: Arc<Stats>,
}

impl Outbox {
    /// An outbox read with [`next`](Self::next), open at once.
    pub(crate) fn new(
        config: DeliveryConfig,
        only: Option<StreamId>,
        stats: Arc<Stats>,
    ) -> Arc<Self> {
        let outbox = Self::build(config, only, stats, None);
        outbox.state().greeted = true;
        outbox
    }

    /// An outbox that calls `start_writer` whenever something is queued and no writer runs;
    /// the writer reads it with [`take`](Self::take). Nothing is sent before
    /// [`greet`](Self::greet): what is pushed before waits, in order.
    pub(crate) fn with_writer(
        config: DeliveryConfig,
        stats: Arc<Stats>,
        start_writer: StartWriter,
    ) -> Arc<Self> {
        Self::build(config, None, stats, Some(start_writer))
    }

    fn build(
        config: DeliveryConfig,
        only: Option<StreamId>,
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
            && st.greeted
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

    fn wants(&self, out: &Out) -> bool {
        match (&self.only, out.stream_id()) {
            (None, _) => true,
            (Some(only), Some(stream)) => only == stream,
            // An SSE response gets no replies: it sends no events.
            (Some(_), None) => false,
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        !self.closed.load(Ordering::Acquire) && !self.evicted.load(Ordering::Acquire)
    }

    /// Content bytes queued (and in flight).
    pub(crate) fn queued_bytes(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }

    /// Queues an item for this follower. Never waits.
    pub(crate) fn push(&self, out: Out) -> Pushed {
        self.push_with(out, None)
    }

    /// As [`push`](Self::push), but when nothing is queued or being written, `send` is tried
    /// first, under the lock (so nothing can overtake it): it returns whether the item went
    /// out. That saves a writer task's round trip through the scheduler for a client that
    /// keeps up.
    ///
    /// With `Flusher::Producer`, the caller promises to call [`flush`](Self::flush) when its burst
    /// is over: chunks of a burst are then held for it (and sent merged) instead of going
    /// through the writer task, except that [`MERGE_BEHIND`] held items, or one held for
    /// [`DeliveryConfig::burst_gap`], go out at once.
    pub(crate) fn push_or_send(
        &self,
        out: Out,
        send: &dyn Fn(&Out) -> bool,
        flusher: Flusher,
    ) -> Pushed {
        self.push_with(out, Some((send, flusher)))
    }

    fn push_with(&self, out: Out, send: Option<Direct<'_>>) -> Pushed {
        if !self.is_open() || !self.wants(&out) {
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
        if st.greeted && st.held_since.is_some() && !st.writing {
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
            if out.is_mergeable() {
                st.last_direct = Some(Instant::now());
            }
        }
    }

    /// Where the follower stands in `stream` (remembered from now on).
    fn position<'a>(
        st: &'a mut OutboxState,
        conversation: &ConversationId,
        stream: &StreamId,
    ) -> &'a mut StreamPos {
        if !st.streams.contains_key(stream) {
            st.order.push_back(stream.clone());
            while st.order.len() > STREAMS_KEPT {
                if let Some(old) = st.order.pop_front() {
                    st.streams.remove(&old);
                }
            }
        }
        st.streams
            .entry(stream.clone())
            .or_insert_with(|| StreamPos {
                conversation: conversation.clone(),
                last: 0,
                ended: false,
                held: None,
                restored: false,
            })
    }

    fn push_locked(
        &self,
        st: &mut OutboxState,
        out: Out,
        live: bool,
        send: Option<Direct<'_>>,
    ) -> Pushed {
        // An event of an answer is tracked by its answer (`message_added` is of none).
        if let Some((event, stream)) = out.event().and_then(|e| Some((e, e.stream_id()?))) {
            let pos = Self::position(st, event.conversation_id(), stream);
            if live && let Some(held) = &mut pos.held {
                held.push(out);
                return Pushed::Queued;
            }
            if let Some(seq) = event.seq() {
                let first = event.first_seq().unwrap_or(seq);
                if seq <= pos.last {
                    return Pushed::Queued; // already queued: a duplicate
                }
                if live && pos.last > 0 && first > pos.last + 1 {
                    // Held until the log has filled the gap before it.
                    let after = pos.last;
                    let stream_id = stream.clone();
                    pos.held = Some(vec![out]);
                    return Pushed::Gap { stream_id, after };
                }
                pos.last = seq;
            } else if event.is_terminal() {
                if pos.ended {
                    return Pushed::Queued;
                }
                pos.ended = true;
            }
        }
        // Straight out only when nothing of this follower's is waiting or in a writer's
        // hands, and not in a burst: chunks that come less than `burst_gap` apart are merged,
        // by the writer or (held) by the producer's flush.
        let mergeable = out.is_mergeable();
        let gap_limit = self.config.burst_gap;
        let in_burst = mergeable && st.last_direct.is_some_and(|t| t.elapsed() < gap_limit);
        let direct = send.filter(|_| st.greeted && !st.writing);
        match direct {
            Some((send, _)) if st.queue.is_empty() && !in_burst && send(&out) => {
                if mergeable {
                    st.last_direct = Some(Instant::now());
                }
            }
            Some((send, Flusher::Producer)) if in_burst || st.held_since.is_some() => {
                self.enqueue(st, out);
                let started = st.held_since.is_none();
                let since = *st.held_since.get_or_insert_with(Instant::now);
                if st.queue.len() >= MERGE_BEHIND || since.elapsed() >= gap_limit {
                    self.flush_locked(st, send);
                } else if started {
                    return Pushed::Held;
                }
            }
            _ => {
                // To the writer, which takes what is held too.
                st.held_since = None;
                self.enqueue(st, out);
            }
        }
        Pushed::Queued
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

    /// Lets the outbox send: `greeting` goes out first, then everything pushed before (the
    /// replies to the events a client sent the moment it saw CONNECT, a resumed stream).
    pub(crate) fn greet(&self, greeting: Out) {
        let mut st = self.state();
        self.bytes.fetch_add(greeting.bytes(), Ordering::AcqRel);
        st.queue.push_front(greeting);
        st.greeted = true;
        let claimed = self.claim_writer(&mut st);
        drop(st);
        self.after_push();
        self.start_writer(claimed);
    }

    /// Drops what is queued of `stream` and not yet sent, and holds its live events until
    /// [`finish_resume`](Self::finish_resume): a client resumes from what it holds.
    pub(crate) fn begin_resume(&self, conversation: &ConversationId, stream: &StreamId) {
        let mut st = self.state();
        self.drop_queued(&mut st, |o| o.stream_id() == Some(stream));
        let pos = Self::hold(&mut st, conversation, stream);
        pos.restored = false;
    }

    /// Holds the live events of `stream`, running in a conversation a reconnected socket was
    /// put back in, until its client resumes it (and says where it stands) or
    /// [`end_restore_hold`](Self::end_restore_hold). Without it, the live tail would reach
    /// the client before its resume, and the replay would repeat it.
    pub(crate) fn hold_restored(&self, conversation: &ConversationId, stream: &StreamId) {
        let mut st = self.state();
        let pos = Self::hold(&mut st, conversation, stream);
        pos.restored = true;
    }

    /// The client of a restored socket did not resume `stream` in time: what was held goes
    /// out as it is, as a late joiner gets it. Nothing when a resume took the hold over.
    pub(crate) fn end_restore_hold(&self, stream: &StreamId) {
        let mut st = self.state();
        let held = match st.streams.get_mut(stream) {
            Some(pos) if pos.restored => {
                pos.restored = false;
                pos.held.take().unwrap_or_default()
            }
            _ => return,
        };
        self.release(st, held);
    }

    /// The position of `stream`, holding its live events (what it held already, kept).
    fn hold<'a>(
        st: &'a mut OutboxState,
        conversation: &ConversationId,
        stream: &StreamId,
    ) -> &'a mut StreamPos {
        let pos = Self::position(st, conversation, stream);
        pos.held = Some(pos.held.take().unwrap_or_default());
        pos
    }

    /// Queues what the log gave (the events after `after_seq`, then its end), then releases
    /// the held live events, dropping those the log already gave.
    pub(crate) fn finish_resume(
        &self,
        stream: &StreamId,
        after_seq: u64,
        events: Vec<StreamEvent>,
        end: Option<StreamEvent>,
    ) {
        let mut st = self.state();
        let held = match st.streams.get_mut(stream) {
            Some(pos) => {
                pos.last = after_seq;
                pos.ended = false;
                pos.held.take().unwrap_or_default()
            }
            None => Vec::new(),
        };
        let replayed = events.into_iter().chain(end).map(Out::stream);
        self.release(st, replayed.chain(held));
    }

    /// Gives up a resume: the held live events go out as they are.
    pub(crate) fn abort_resume(&self, stream: &StreamId) {
        let mut st = self.state();
        let held = st
            .streams
            .get_mut(stream)
            .and_then(|p| p.held.take())
            .unwrap_or_default();
        self.release(st, held);
    }

    /// Queues what a resume ends with, in order, and starts the writer for it.
    fn release(&self, mut st: MutexGuard<'_, OutboxState>, outs: impl IntoIterator<Item = Out>) {
        // A follower of one answer (SSE) gets no `message_added` from the replay.
        for out in outs.into_iter().filter(|out| self.wants(out)) {
            self.push_locked(&mut st, out, false, None);
        }
        let claimed = self.claim_writer(&mut st);
        drop(st);
        self.after_push();
        self.start_writer(claimed);
    }

    /// Drops the queued items that `unwanted` picks, and their bytes from the count.
    fn drop_queued(&self, st: &mut OutboxState, unwanted: impl Fn(&Out) -> bool) {
        let mut freed = 0;
        st.queue.retain(|o| {
            let drop = unwanted(o);
            if drop {
                freed += o.bytes();
            }
            !drop
        });
        self.bytes
            .fetch_sub(freed.min(self.queued_bytes()), Ordering::AcqRel);
    }

    /// The follower left `conversation`: what is queued of its streams is dropped, and where
    /// the follower stood in them is forgotten. If it joins again, it gets the live tail from
    /// there, like any late joiner, and resumes to fill the rest.
    pub(crate) fn forget(&self, conversation: &ConversationId) {
        let mut st = self.state();
        self.drop_queued(&mut st, |o| {
            o.event()
                .is_some_and(|e| e.conversation_id() == conversation)
        });
        st.streams
            .retain(|_, pos| pos.conversation != *conversation);
        let OutboxState { order, streams, .. } = &mut *st;
        order.retain(|s| streams.contains_key(s));
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;

    fn chunk(seq: u64) -> Out {
        Out::stream(StreamEvent::Chunk(marie_core::StreamChunk {
            conversation_id: ConversationId::parse("c").unwrap(),
            stream_id: StreamId::parse("s").unwrap(),
            seq,
            content: format!("{seq} "),
            done: false,
            tokens_used: seq,
            first_seq: None,
        }))
    }

    fn end() -> Out {
        Out::stream(StreamEvent::End(marie_core::StreamEnd {
            conversation_id: ConversationId::parse("c").unwrap(),
            stream_id: StreamId::parse("s").unwrap(),
            message_id: marie_core::MessageId::parse("m").unwrap(),
            full_content: String::new(),
            status: marie_core::EndStatus::Complete,
            usage: marie_core::Usage::default(),
            finish_reason: marie_core::FinishReason::Stop,
            parts: Vec::new(),
        }))
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
        let outbox = Outbox::with_writer(config, Arc::default(), start);
        outbox.state().greeted = true;
        (outbox, writers)
    }

    fn reply(name: &'static str) -> Out {
        Out::Reply(Arc::new(super::super::Reply::new(
            name,
            8,
            Box::new(|| super::super::Emitted::Sent),
        )))
    }

    /// Before its greeting, a socket's outbox sends nothing and starts no writer; the
    /// greeting then goes first, the rest behind it in order.
    #[test]
    fn nothing_goes_out_before_the_greeting_and_it_goes_first() {
        let writers = Arc::new(AtomicUsize::new(0));
        let counted = writers.clone();
        let start: StartWriter = Box::new(move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
        });
        let outbox = Outbox::with_writer(DeliveryConfig::default(), Arc::default(), start);
        let sent = Sent::default();
        let send = |o: &Out| sent.send(o);
        outbox.push_or_send(reply("joined"), &send, Flusher::Writer);
        outbox.push_or_send(reply("ack"), &send, Flusher::Writer);
        outbox.push_or_send(chunk(1), &send, Flusher::Producer);
        outbox.flush(&send);
        assert!(sent.take().is_empty());
        assert_eq!(writers.load(Ordering::SeqCst), 0);
        outbox.greet(reply("connected"));
        assert_eq!(writers.load(Ordering::SeqCst), 1, "one writer sends it all");
        let order: Vec<_> = std::iter::from_fn(|| outbox.take())
            .map(|o| o.name())
            .collect();
        assert_eq!(order, ["connected", "joined", "ack", "stream_chunk"]);
    }

    /// A restored socket holds a running stream's live events until its client resumes;
    /// the replay then comes first and nothing is sent twice. Unresumed, the hold ends as
    /// it is.
    #[test]
    fn a_restored_stream_waits_for_the_resume_and_is_sent_once() {
        let (outbox, _) = outbox(Duration::from_secs(3600));
        let sent = Sent::default();
        let send = |o: &Out| sent.send(o);
        let (conversation, stream) = (
            ConversationId::parse("c").unwrap(),
            StreamId::parse("s").unwrap(),
        );
        outbox.hold_restored(&conversation, &stream);
        for seq in [5, 6] {
            outbox.push_or_send(chunk(seq), &send, Flusher::Writer);
        }
        assert!(sent.take().is_empty(), "held until the resume");
        outbox.begin_resume(&conversation, &stream);
        outbox.end_restore_hold(&stream); // too late: the resume owns the hold now
        outbox.push_or_send(chunk(7), &send, Flusher::Writer);
        let replayed = (3..=6)
            .map(|seq| chunk(seq).event().cloned().unwrap())
            .collect();
        outbox.finish_resume(&stream, 2, replayed, None);
        let seqs: Vec<_> = std::iter::from_fn(|| outbox.take())
            .filter_map(|o| o.seq())
            .collect();
        assert_eq!(seqs, [3, 4, 5, 6, 7], "each position once, in order");

        let other = StreamId::parse("t").unwrap();
        outbox.hold_restored(&conversation, &other);
        let late = Out::stream(StreamEvent::Chunk(marie_core::StreamChunk {
            stream_id: other.clone(),
            ..match chunk(9).event() {
                Some(StreamEvent::Chunk(c)) => c.clone(),
                _ => unreachable!(),
            }
        }));
        outbox.push_or_send(late, &send, Flusher::Writer);
        assert!(outbox.take().is_none());
        outbox.end_restore_hold(&other);
        assert_eq!(outbox.take().and_then(|o| o.seq()), Some(9));
    }

    #[derive(Default)]
    struct Sent(Mutex<Vec<String>>);

    impl Sent {
        fn send(&self, out: &Out) -> bool {
            let item = match out.event() {
                Some(StreamEvent::Chunk(c)) => format!("{}..{}", c.first(), c.seq),
                Some(e @ StreamEvent::Reasoning(_)) => {
                    format!("r{}..{}", e.first_seq().unwrap_or(0), e.seq().unwrap_or(0))
                }
                _ => out.name().to_owned(),
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
            outbox.push_or_send(chunk(1), &send, Flusher::Producer),
            Pushed::Queued
        ));
        assert_eq!(sent.take(), ["1..1"], "the first chunk goes out at once");
        // The next ones come within the burst gap: held, and the first hold says so.
        assert!(matches!(
            outbox.push_or_send(chunk(2), &send, Flusher::Producer),
            Pushed::Held
        ));
        for seq in 3..=10 {
            assert!(matches!(
                outbox.push_or_send(chunk(seq), &send, Flusher::Producer),
                Pushed::Queued
            ));
        }
        assert!(sent.take().is_empty());
        outbox.flush(&send);
        assert_eq!(sent.take(), ["2..10"]);
        // MERGE_BEHIND held chunks go out without waiting for the flush.
        for seq in 11..=(10 + MERGE_BEHIND as u64) {
            outbox.push_or_send(chunk(seq), &send, Flusher::Producer);
        }
        assert_eq!(sent.take(), [format!("11..{}", 10 + MERGE_BEHIND)]);
        // The end of the stream waits behind held chunks, and goes with them.
        outbox.push_or_send(chunk(27), &send, Flusher::Producer);
        outbox.push_or_send(end(), &send, Flusher::Producer);
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

    fn reasoning(seq: u64) -> Out {
        Out::stream(StreamEvent::Reasoning(marie_core::StreamReasoning {
            conversation_id: ConversationId::parse("c").unwrap(),
            stream_id: StreamId::parse("s").unwrap(),
            seq,
            content: format!("r{seq} "),
            first_seq: None,
        }))
    }

    /// Reasoning merges like text, each with its own kind: the seq sequence they share stays
    /// whole, and a client sees reasoning and text apart.
    #[test]
    fn reasoning_merges_with_reasoning_and_text_with_text() {
        let (outbox, _) = outbox(Duration::from_secs(3600));
        let sent = Sent::default();
        let send = |o: &Out| sent.send(o);
        outbox.push_or_send(reasoning(1), &send, Flusher::Producer);
        for out in [reasoning(2), reasoning(3), chunk(4), chunk(5), reasoning(6)] {
            outbox.push_or_send(out, &send, Flusher::Producer);
        }
        outbox.flush(&send);
        assert_eq!(sent.take(), ["r1..1", "r2..3", "4..5", "r6..6"]);
        assert_eq!(outbox.queued_bytes(), 0);
    }

    #[test]
    fn a_burst_nobody_flushes_goes_to_the_writer() {
        let (outbox, writers) = outbox(Duration::from_secs(3600));
        let sent = Sent::default();
        let send = |o: &Out| sent.send(o);
        outbox.push_or_send(chunk(1), &send, Flusher::Writer);
        outbox.push_or_send(chunk(2), &send, Flusher::Writer);
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
        outbox.push_or_send(chunk(1), &send, Flusher::Producer);
        outbox.push_or_send(chunk(2), &send, Flusher::Producer);
        outbox.push_or_send(chunk(3), &send, Flusher::Producer);
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
            outbox.push_or_send(chunk(seq), &send, Flusher::Producer);
        }
        assert_eq!(sent.take(), ["1..1", "2..2", "3..3", "4..4", "5..5"]);
        assert_eq!(writers.load(Ordering::SeqCst), 0);
    }
}
