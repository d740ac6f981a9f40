//! [`Hub`]: the followers of this node, and the control bus to the other nodes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use marie_core::{
    ControlBus, ControlMessage, ConversationId, Notice, SinkError, StreamEvent, StreamId,
    StreamLog, UserId,
};
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;

use super::outbox::{Flusher, Pushed, StartWriter};
use super::{DeliveryConfig, Out, Outbox, Stats, resume, writer};
use crate::rooms::conversation_room;

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
    pub(crate) followers: Followers,
    pub(crate) stats: Arc<Stats>,
    pub(crate) config: DeliveryConfig,
    /// This node, to ignore its own messages coming back over the bus.
    origin: String,
    /// Carries stream events to the other nodes; `None` on a single node.
    bus: Option<Arc<dyn ControlBus>>,
    /// Followers holding a burst of a conversation's answer until its task flushes them.
    held: Mutex<HashMap<ConversationId, Vec<Held<A>>>>,
    /// Tells this node's connections of a notice.
    notices: OnceLock<NoticeHandler>,
}

type Held<A> = (SocketRef<A>, Arc<Outbox>);

/// Tells the users named, on this node, of a notice (`crate::socketio::notices`). Set by
/// the builder, which knows the front end; a function here so that delivery does not
/// import the Socket.IO front end.
pub(crate) type NoticeHandler = Arc<dyn Fn(Notice, Vec<UserId>) + Send + Sync>;

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
            followers: Followers::default(),
            stats: Arc::default(),
            config,
            origin: marie_core::SessionId::random().to_string(),
            bus,
            held: Mutex::default(),
            notices: OnceLock::new(),
        });
        if let Some(bus) = &hub.bus {
            let weak = Arc::downgrade(&hub);
            bus.subscribe(Arc::new(move |message| {
                let Some(hub) = weak.upgrade() else { return };
                match message {
                    ControlMessage::Stream { origin, events } if origin != hub.origin => {
                        for event in events {
                            // Nobody here flushes a burst from another node: the writer
                            // merges it.
                            hub.dispatch_local(Out::stream(event), Flusher::Writer);
                        }
                    }
                    ControlMessage::Notice {
                        origin,
                        notice,
                        users,
                    } if origin != hub.origin => hub.notify_local(notice, users),
                    _ => {}
                }
            }));
        }
        hub
    }

    pub(crate) fn new_outbox(&self, only: Option<StreamId>) -> Arc<Outbox> {
        Outbox::new(self.config.clone(), only, self.stats.clone())
    }

    /// Delivers an answer's events to this node's followers, then to the other nodes in one
    /// message. The engine flushes when its burst is over ([`flush`](Self::flush)).
    pub(crate) async fn deliver(
        self: &Arc<Self>,
        events: Vec<StreamEvent>,
    ) -> Result<(), SinkError> {
        let remote = self.bus.as_ref().map(|_| events.clone());
        for event in events {
            self.dispatch_local(Out::stream(event), Flusher::Producer);
        }
        match remote {
            Some(events) if !events.is_empty() => self.publish(events).await,
            _ => Ok(()),
        }
    }

    /// Queues a stream event for every follower of its conversation on this node.
    fn dispatch_local(self: &Arc<Self>, out: Out, flusher: Flusher) {
        let Some(conversation) = out.event().map(|e| e.conversation_id().clone()) else {
            return;
        };
        let followers = self.followers.of(&conversation);
        let mut sockets = Vec::new();
        if let Some(ns) = self.io.of(&self.namespace) {
            for socket in ns.local().to(conversation_room(&conversation)).sockets() {
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
                self.fill_gap(outbox, stream_id, after);
            }
        }
        for (socket, outbox) in sockets {
            let Some(item) = next_out() else { return };
            let send = |o: &Out| o.emit_to(&socket) == super::Emitted::Sent;
            let pushed = if direct {
                outbox.push_or_send(item, &send, flusher)
            } else {
                outbox.push(item)
            };
            match pushed {
                Pushed::Gap { stream_id, after } => self.fill_gap(outbox, stream_id, after),
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

    /// Sends what the followers of `conversation` hold of a burst.
    pub(crate) fn flush(&self, conversation: &ConversationId) {
        let held = {
            let mut map = self.held.lock().unwrap_or_else(|e| e.into_inner());
            if map.is_empty() {
                return;
            }
            map.remove(conversation)
        };
        for (socket, outbox) in held.into_iter().flatten() {
            outbox.flush(&|o: &Out| o.emit_to(&socket) == super::Emitted::Sent);
        }
    }

    /// A follower missed events (a message between nodes was lost): fill them from the log.
    fn fill_gap(self: &Arc<Self>, outbox: Arc<Outbox>, stream: StreamId, after: u64) {
        let log = self.log.clone();
        tokio::spawn(async move {
            if let Err(e) = resume::fill_gap(&log, &outbox, &stream, after).await {
                tracing::warn!(error = %e, %stream, "could not fill a gap from the stream log");
            }
        });
    }

    /// Sets what tells this node's connections of a notice (once, by the builder).
    pub(crate) fn on_notice(&self, handler: NoticeHandler) {
        let _ = self.notices.set(handler);
    }

    /// Tells `users` of `notice` on this node, then on the others over the bus.
    pub(crate) async fn notify(&self, notice: Notice, users: Vec<UserId>) -> Result<(), SinkError> {
        let remote = self.bus.as_ref().map(|_| (notice.clone(), users.clone()));
        self.notify_local(notice, users);
        let (Some(bus), Some((notice, users))) = (&self.bus, remote) else {
            return Ok(());
        };
        let message = ControlMessage::Notice {
            origin: self.origin.clone(),
            notice,
            users,
        };
        bus.publish(message).await.map_err(|e| {
            metrics::counter!("marie_broadcast_failures_total").increment(1);
            SinkError::Delivery(format!("notice delivered on this node only: {e}"))
        })
    }

    fn notify_local(&self, notice: Notice, users: Vec<UserId>) {
        if let Some(handler) = self.notices.get() {
            handler(notice, users);
        }
    }

    /// Sends an answer's events to the other nodes, in one message.
    async fn publish(&self, events: Vec<StreamEvent>) -> Result<(), SinkError> {
        let Some(bus) = &self.bus else { return Ok(()) };
        let message = ControlMessage::Stream {
            origin: self.origin.clone(),
            events,
        };
        bus.publish(message).await.map_err(|e| {
            metrics::counter!("marie_broadcast_failures_total").increment(1);
            SinkError::Delivery(format!("delivered on this node only: {e}"))
        })
    }

    /// Gives a new socket its outbox. The task that writes it out runs only while something
    /// is queued: ten thousand idle connections hold no task of MARIE's.
    pub(crate) fn attach(self: &Arc<Self>, socket: &SocketRef<A>) -> Arc<Outbox> {
        // Weak, and the socket looked up by id: the outbox lives in the socket's extensions,
        // so holding either strongly would keep both alive forever.
        let hub = Arc::downgrade(self);
        let sid = socket.id;
        let start: StartWriter = Box::new(move |outbox: Arc<Outbox>| {
            let found = hub.upgrade().and_then(|hub| {
                let socket = hub.io.of(&hub.namespace)?.get_socket(sid)?;
                Some((socket, hub.config.clone()))
            });
            match found {
                Some((socket, config)) => {
                    tokio::spawn(writer::write_out(socket, outbox, config));
                }
                None => outbox.close(),
            }
        });
        let outbox = Outbox::with_writer(self.config.clone(), self.stats.clone(), start);
        socket.extensions.insert(SocketOutbox(outbox.clone()));
        outbox
    }
}

/// Followers by conversation, each with its registration id.
type FollowerMap = HashMap<ConversationId, Vec<(u64, Arc<Outbox>)>>;

/// Followers that are not sockets (SSE responses), registered by conversation.
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

    fn of(&self, conversation: &ConversationId) -> Vec<Arc<Outbox>> {
        self.map()
            .get(conversation)
            .map(|l| l.iter().map(|(_, o)| o.clone()).collect())
            .unwrap_or_default()
    }
}
