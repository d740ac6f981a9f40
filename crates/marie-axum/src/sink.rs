//! [`SocketIoSink`]: room events out through socketioxide, stream events through the
//! per-client delivery of [`crate::delivery`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use marie_core::{
    ControlBus, ControlMessage, ConversationId, RoomEvent, SinkError, StreamLog, StreamSink,
};
use serde_json::Value;
use socketioxide::adapter::{Adapter, LocalAdapter};
use socketioxide::extract::SocketRef;
use socketioxide::{BroadcastError, SendError, SocketError, SocketIo};

use crate::delivery::{self, Burst, DeliveryConfig, Out, Outbox, Pushed, Stats};
use crate::rooms::conversation_room;

/// A [`StreamSink`] that sends each event to the conversation's Socket.IO room.
///
/// Stream events (`stream_start`, `stream_chunk`, `stream_end`, `stream_error`) built by
/// the layer go to each local member through its own bounded queue (chunks merge, never drop,
/// when a client is slow), and to the other nodes of a cluster over the control bus. Other
/// events are room broadcasts: with a cluster adapter on the `SocketIo`, they reach every
/// node; when the adapter cannot reach the other nodes (Redis is away), the event still goes
/// to this node's members, and `emit` reports the failure.
#[derive(Debug)]
pub struct SocketIoSink<A: Adapter = LocalAdapter> {
    io: SocketIo<A>,
    namespace: String,
    hub: Option<Arc<Hub<A>>>,
}

impl<A: Adapter> Clone for SocketIoSink<A> {
    fn clone(&self) -> Self {
        Self {
            io: self.io.clone(),
            namespace: self.namespace.clone(),
            hub: self.hub.clone(),
        }
    }
}

impl<A: Adapter> SocketIoSink<A> {
    /// A sink on `namespace` of `io` that broadcasts every event to the room (no per-client
    /// queues: a client whose socketioxide buffer is full loses events).
    pub fn new(io: SocketIo<A>, namespace: impl Into<String>) -> Self {
        Self {
            io,
            namespace: namespace.into(),
            hub: None,
        }
    }

    pub(crate) fn with_hub(hub: Arc<Hub<A>>) -> Self {
        Self {
            io: hub.io.clone(),
            namespace: hub.namespace.clone(),
            hub: Some(hub),
        }
    }
}

/// `stream_start`, `stream_chunk`, `stream_end` or `stream_error`.
fn is_stream(event: &RoomEvent) -> bool {
    matches!(
        event,
        RoomEvent::StreamStart(_)
            | RoomEvent::StreamChunk(_)
            | RoomEvent::StreamEnd(_)
            | RoomEvent::StreamError(_)
    )
}

impl<A: Adapter> Hub<A> {
    /// Delivers a stream event to this node's followers, and returns what the other nodes
    /// must be sent, if there are other nodes.
    fn deliver(
        self: &Arc<Self>,
        conversation: &ConversationId,
        event: RoomEvent,
    ) -> Result<Option<(&'static str, Value)>, SinkError> {
        let name = event.name();
        // The payload as a `Value` only where it is needed: for the other nodes, and for
        // the rare non-chunk events. A chunk goes to the followers as it is.
        let payload = match (&event, &self.bus) {
            (RoomEvent::StreamChunk(_), None) => None,
            _ => {
                Some(serde_json::to_value(&event).map_err(|e| SinkError::Delivery(e.to_string()))?)
            }
        };
        let out = match event {
            RoomEvent::StreamChunk(chunk) => Some(Out::from_chunk(chunk)),
            _ => payload.as_ref().and_then(|p| Out::from_event(name, p)),
        };
        if let Some(out) = out {
            // The engine flushes when its burst is over (`flush` below).
            self.dispatch_local(conversation, out, Burst::Held);
        }
        Ok(payload.filter(|_| self.bus.is_some()).map(|p| (name, p)))
    }
}

#[async_trait]
impl<A: Adapter> StreamSink for SocketIoSink<A> {
    async fn emit(&self, conversation: &ConversationId, event: RoomEvent) -> Result<(), SinkError> {
        if let (true, Some(hub)) = (is_stream(&event), &self.hub) {
            return match hub.deliver(conversation, event)? {
                Some(remote) => hub.publish(conversation, vec![remote]).await,
                None => Ok(()),
            };
        }
        let ns = self
            .io
            .of(&self.namespace)
            .ok_or_else(|| SinkError::Delivery("namespace not registered".into()))?;
        let room = conversation_room(conversation);
        match ns.clone().to(room.clone()).emit(event.name(), &event).await {
            Ok(()) => Ok(()),
            Err(BroadcastError::Adapter(e)) => {
                // A cluster adapter publishes to the other nodes before it delivers locally,
                // so a failed publish reached no one: deliver to this node's members at least.
                metrics::counter!("marie_broadcast_failures_total").increment(1);
                let local = ns.local().to(room).emit(event.name(), &event).await;
                Err(SinkError::Delivery(match local {
                    Ok(()) => format!("delivered on this node only: {e}"),
                    Err(local) => format!("{e}; on this node: {local}"),
                }))
            }
            Err(e) => Err(SinkError::Delivery(e.to_string())),
        }
    }

    /// A burst of stream events: delivered here one by one, sent to the other nodes in one
    /// round trip.
    async fn emit_many(
        &self,
        conversation: &ConversationId,
        events: Vec<RoomEvent>,
    ) -> Result<(), SinkError> {
        let Some(hub) = self.hub.as_ref().filter(|_| events.iter().all(is_stream)) else {
            // Not a burst of stream events (the engine sends no other): one by one.
            return marie_core::emit_each(self, conversation, events).await;
        };
        let mut remote = Vec::new();
        for event in events {
            remote.extend(hub.deliver(conversation, event)?);
        }
        if remote.is_empty() {
            return Ok(());
        }
        hub.publish(conversation, remote).await
    }

    async fn flush(&self, conversation: &ConversationId) -> Result<(), SinkError> {
        if let Some(hub) = &self.hub {
            hub.flush(conversation);
        }
        Ok(())
    }
}

/// Up to this many followers on this node, a stream event is emitted by the task that
/// produced it when a follower has nothing queued (`docs/benchmarks.md`).
const DIRECT_MAX: usize = 4;

/// A socket's outbox, in its extensions.
#[derive(Clone)]
pub(crate) struct SocketOutbox(pub(crate) Arc<Outbox>);

/// Per-client delivery of stream events on this node.
pub(crate) struct Hub<A: Adapter> {
    io: SocketIo<A>,
    namespace: String,
    pub(crate) log: Arc<dyn StreamLog>,
    pub(crate) followers: delivery::Followers,
    pub(crate) stats: Arc<Stats>,
    pub(crate) config: DeliveryConfig,
    /// This node, to ignore its own messages coming back over the bus.
    origin: String,
    /// Carries stream events to the other nodes; `None` on a single node.
    bus: Option<Arc<dyn ControlBus>>,
    /// Followers holding a burst of a conversation's answer until its task flushes them.
    held: Mutex<HashMap<ConversationId, Vec<Held<A>>>>,
}

type Held<A> = (SocketRef<A>, Arc<Outbox>);

impl<A: Adapter> std::fmt::Debug for Hub<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl<A: Adapter> Hub<A> {
    pub(crate) fn new(
        io: SocketIo<A>,
        namespace: String,
        log: Arc<dyn StreamLog>,
        config: DeliveryConfig,
        bus: Option<Arc<dyn ControlBus>>,
    ) -> Arc<Self> {
        let hub = Arc::new(Self {
            io,
            namespace,
            log,
            followers: delivery::Followers::default(),
            stats: Arc::default(),
            config,
            origin: marie_core::SessionId::random().to_string(),
            bus,
            held: Mutex::default(),
        });
        if let Some(bus) = &hub.bus {
            let weak = Arc::downgrade(&hub);
            bus.subscribe(Arc::new(move |message| {
                if let (
                    Some(hub),
                    ControlMessage::StreamEvent {
                        origin,
                        conversation_id,
                        event,
                        payload,
                    },
                ) = (weak.upgrade(), message)
                    && origin != hub.origin
                    && let Some(out) = Out::from_event(&event, &payload)
                {
                    // Nobody here flushes a burst from another node: the writer merges it.
                    hub.dispatch_local(&conversation_id, out, Burst::ToWriter);
                }
            }));
        }
        hub
    }

    pub(crate) fn new_outbox(&self, only: Option<String>) -> Arc<Outbox> {
        Outbox::new(self.config.clone(), only, self.stats.clone())
    }

    /// Queues a stream event for every follower of the conversation on this node.
    pub(crate) fn dispatch_local(
        self: &Arc<Self>,
        conversation: &ConversationId,
        out: Out,
        burst: Burst,
    ) {
        let followers = self.followers.of(conversation);
        let mut sockets = Vec::new();
        if let Some(ns) = self.io.of(&self.namespace) {
            for socket in ns.local().to(conversation_room(conversation)).sockets() {
                if let Some(SocketOutbox(outbox)) = socket.extensions.get::<SocketOutbox>() {
                    sockets.push((socket, outbox));
                }
            }
        }
        // A conversation with a few members here: emit straight from this task when a
        // member's queue is empty (one scheduler round trip less per chunk). A big room:
        // queue for each member's writer, which run in parallel and merge what piles up.
        let mut left = followers.len() + sockets.len();
        let direct = left <= DIRECT_MAX;
        let mut out = Some(out);
        // The last follower gets the item itself: a chunk nobody shares is serialized
        // straight into its packet, not first into a cache for others.
        let mut next_out = || {
            left -= 1;
            if left == 0 { out.take() } else { out.clone() }
        };
        for outbox in followers {
            let Some(item) = next_out() else { return };
            if let Pushed::Gap { stream_id, after } = outbox.push(item) {
                self.fill_gap(outbox, conversation, &stream_id, after);
            }
        }
        for (socket, outbox) in sockets {
            let Some(item) = next_out() else { return };
            let send = |o: &Out| socket.emit(o.name(), &o.wire()).is_ok();
            let pushed = if direct {
                outbox.push_or_send(item, &send, burst)
            } else {
                outbox.push(item)
            };
            match pushed {
                Pushed::Gap { stream_id, after } => {
                    self.fill_gap(outbox, conversation, &stream_id, after);
                }
                Pushed::Held => self
                    .held
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(conversation.clone())
                    .or_default()
                    .push((socket, outbox)),
                Pushed::Queued => {}
            }
        }
    }

    /// Sends what the followers of `conversation` hold of a burst (see [`Burst::Held`]).
    pub(crate) fn flush(&self, conversation: &ConversationId) {
        let held = {
            let mut map = self.held.lock().unwrap_or_else(|e| e.into_inner());
            if map.is_empty() {
                return;
            }
            map.remove(conversation)
        };
        for (socket, outbox) in held.into_iter().flatten() {
            outbox.flush(&|o: &Out| socket.emit(o.name(), &o.wire()).is_ok());
        }
    }

    /// A follower missed chunks (a cross-node message was lost): fill them from the log.
    fn fill_gap(
        self: &Arc<Self>,
        outbox: Arc<Outbox>,
        conversation: &ConversationId,
        stream: &str,
        after: u64,
    ) {
        let Ok(stream) = marie_core::StreamId::parse(stream) else {
            return;
        };
        let (hub, conversation) = (self.clone(), conversation.clone());
        tokio::spawn(async move {
            if let Err(e) = delivery::resume(&hub.log, &outbox, &conversation, &stream, after).await
            {
                tracing::warn!(error = %e, %stream, "could not fill a gap from the stream log");
            }
        });
    }

    /// Sends stream events to the other nodes, in one round trip.
    async fn publish(
        &self,
        conversation: &ConversationId,
        events: Vec<(&'static str, Value)>,
    ) -> Result<(), SinkError> {
        let Some(bus) = &self.bus else { return Ok(()) };
        let messages = events
            .into_iter()
            .map(|(name, payload)| ControlMessage::StreamEvent {
                origin: self.origin.clone(),
                conversation_id: conversation.clone(),
                event: name.to_owned(),
                payload,
            })
            .collect();
        bus.publish_many(messages).await.map_err(|e| {
            metrics::counter!("marie_broadcast_failures_total").increment(1);
            SinkError::Delivery(format!("delivered on this node only: {e}"))
        })
    }

    /// Gives a new socket its outbox. The task that writes it out runs only while something
    /// is queued: ten thousand idle connections hold no task of MARIE's.
    pub(crate) fn attach(self: &Arc<Self>, socket: &SocketRef<A>) {
        // Weak, and the socket looked up by id: the outbox lives in the socket's extensions,
        // so holding either strongly would keep both alive forever.
        let hub = Arc::downgrade(self);
        let sid = socket.id;
        let start: delivery::StartWriter = Box::new(move |outbox: Arc<Outbox>| {
            let found = hub.upgrade().and_then(|hub| {
                let socket = hub.io.of(&hub.namespace)?.get_socket(sid)?;
                Some((socket, hub.config.clone()))
            });
            match found {
                Some((socket, config)) => {
                    tokio::spawn(write_out(socket, outbox, config));
                }
                None => outbox.close(),
            }
        });
        let outbox = Outbox::with_writer(self.config.clone(), self.stats.clone(), start);
        socket.extensions.insert(SocketOutbox(outbox));
    }
}

/// Emits what is queued in `outbox` to `socket`, then ends. While socketioxide's buffer is
/// full it retries with a backoff, merging what arrives meanwhile, and evicts the client
/// once it has accepted nothing for `max_stall`.
async fn write_out<A: Adapter>(socket: SocketRef<A>, outbox: Arc<Outbox>, config: DeliveryConfig) {
    while let Some(mut out) = outbox.take() {
        let mut attempt = 0;
        let mut stalled: Option<Instant> = None;
        loop {
            match socket.emit(out.name(), &out.wire()) {
                Ok(()) => break,
                Err(SendError::Socket(SocketError::InternalChannelFull)) => {
                    let since = *stalled.get_or_insert_with(Instant::now);
                    if delivery::stalled_too_long(since, &config) {
                        outbox.evict("stalled");
                    }
                    if outbox.is_evicted() {
                        disconnect_when_possible(socket).await;
                        return;
                    }
                    // Chunks that arrived meanwhile join the one waiting.
                    outbox.absorb(&mut out);
                    tokio::time::sleep(delivery::backoff(attempt)).await;
                    attempt += 1;
                }
                Err(_) => {
                    outbox.close();
                    return;
                }
            }
        }
        outbox.sent(&out);
    }
    if outbox.is_evicted() {
        disconnect_when_possible(socket).await;
    }
}

/// Disconnects an evicted socket. Its socketioxide buffer is full, so the DISCONNECT packet
/// may not fit: try again while it stays connected (socketioxide offers nothing to await).
/// Engine.IO closes it anyway at its next ping, which fails on a full buffer.
async fn disconnect_when_possible<A: Adapter>(socket: SocketRef<A>) {
    while socket.connected() {
        match socket.clone().disconnect() {
            Err(SocketError::InternalChannelFull) => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            _ => return,
        }
    }
}
