//! The chat engine: every client command, with the caller's [`Identity`], in one place.
//!
//! Front ends (the Socket.IO handlers, the HTTP fallback) decode a request, call one method
//! here and turn the `Result` into their own wire format. The engine knows nothing of
//! sockets: it talks to the world through the backends it was built with.
//!
//! ## Layout
//!
//! - `mod.rs`: [`ChatEngine`] and its builder; the commands that read or change a
//!   conversation (join, invite, cancel, history, resume reads, sessions).
//! - `send.rs`: `send_message`, from the checks to the spawned answer.
//! - `assistants.rs`: who answers a message: the answer policy, `@mentions` of the named
//!   [`Assistant`]s, `send_message.answer`.
//! - `group.rs`: what a group needs besides answers: a message stored and told without an
//!   answer, `message_added`, read marks.
//! - `branch.rs`: `edit_message`, `regenerate`, `switch_branch`: branches of a conversation.
//! - `answer/`: the task that runs one answer (its provider loop, its bursts, its lease).
//! - `queue.rs`: busy conversations: queued sends (`on_busy: "enqueue"`) and interrupts.
//! - `approve.rs`: `approve_tool`, a member's decision on a tool call, from any node.
//! - `files.rs`: uploads, reading a file, attachments checked and read for the model.
//! - `idempotency.rs`: the outcomes of recent sends, by `client_message_id`.
//! - `conversations.rs`: a user's list of conversations; renaming, settings, archive,
//!   removing a member, deleting a conversation; the notices that tell the members.
//! - `title.rs`: naming a conversation after its first answer ([`TitlePolicy`]).
//! - `config.rs`: [`EngineConfig`].

mod answer;
mod approve;
mod assistants;
mod branch;
mod config;
mod conversations;
mod files;
mod group;
mod idempotency;
mod queue;
mod send;
mod title;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use approve::Waited;
pub use assistants::Assistant;
pub use config::EngineConfig;
pub use conversations::{ConversationDetails, ConversationExport, Member, MemberRole};
pub use files::Upload;
pub use send::{OnBusy, SendOutcome, SendRequest};
pub use title::TitlePolicy;

use crate::{
    AccessPolicy, ChatMessage, ControlBus, ControlMessage, ConversationId, ConversationInfo,
    DefaultAccessPolicy, Error, HistoryQuery, Identity, LlmProvider, LocalControlBus, LogRead,
    MemoryStreamLog, MessageId, SendQueued, SessionId, SessionRecord, Stores, StreamId, StreamLog,
    StreamSink, Tool, ToolApprovalRequest, Toolbox, UsageReport, UserId, check_resume, now_millis,
};
use crate::{BudgetPolicy, FileStore};

/// A running answer, as `joined.active_stream` reports it: the store's lease
/// ([`AnswerLease`](crate::AnswerLease)) and the approval it waits for.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ActiveStream {
    /// The answer.
    pub stream_id: StreamId,
    /// The last `seq` sent so far.
    pub seq: u64,
    /// The tool call the answer waits on a member to approve, if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_approval: Option<ToolApprovalRequest>,
    /// The client tool's call the answer waits on a member to answer, if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_tool_call: Option<crate::PendingToolCall>,
}

impl ActiveStream {
    /// An answer that waits for `waiting` (an approval or a client tool's call), if anything.
    fn waiting_for(stream_id: StreamId, seq: u64, waiting: Option<ToolApprovalRequest>) -> Self {
        let pending_tool_call = waiting.as_ref().and_then(|w| w.pending_tool_call());
        Self {
            stream_id,
            seq,
            pending_approval: waiting.filter(|w| !w.client),
            pending_tool_call,
        }
    }
}

/// The outcome of a join.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Joined {
    /// The conversation's record.
    pub conversation: ConversationInfo,
    /// Whether this join created the conversation.
    pub created: bool,
    /// Every user with access.
    pub members: Vec<UserId>,
    /// The answer running now, if any.
    pub active_stream: Option<ActiveStream>,
    /// The sends waiting behind it, next first, as `queued` announced them (with their
    /// place now).
    pub queued: Vec<SendQueued>,
}

/// Runs conversations: access, history, and one answer at a time per conversation.
///
/// Cheap to clone: every clone shares the same state.
///
/// ## On several nodes
///
/// Engines on several nodes cooperate through what they share: the [`AnswerLeases`](crate::AnswerLeases) store holds a
/// lease per running answer (so `busy` and `joined.active_stream` hold cluster-wide), and
/// the [`ControlBus`] carries `cancel_stream` to the node that runs the answer. With the
/// defaults (an in-process bus) the engine serves one node.
#[derive(Clone)]
pub struct ChatEngine {
    shared: Arc<EngineState>,
}

struct EngineState {
    stores: Stores,
    provider: Arc<dyn LlmProvider>,
    sink: Arc<dyn StreamSink>,
    policy: Arc<dyn AccessPolicy>,
    bus: Arc<dyn ControlBus>,
    log: Arc<dyn StreamLog>,
    tools: Toolbox,
    budget: Option<Arc<dyn BudgetPolicy>>,
    files: Option<Arc<dyn FileStore>>,
    config: EngineConfig,
    state: Mutex<LocalState>,
    tasks: TaskTracker,
    /// Cancelled when shutdown's grace period is over: running answers end `interrupted`.
    interrupt: CancellationToken,
}

/// Guarded by a `std::sync::Mutex` that is never held across an `.await`.
#[derive(Default)]
struct LocalState {
    answers: HashMap<ConversationId, RunningAnswer>,
    sent: idempotency::IdempotencyCache,
}

/// An answer running on this node.
struct RunningAnswer {
    stream_id: StreamId,
    cancel: CancellationToken,
    /// The last `seq` sent, written by the answer's task.
    seq: Arc<AtomicU64>,
    /// The approval the answer waits for, and the wake-up for when it is decided.
    approvals: Arc<answer::Approvals>,
}

/// Builds a [`ChatEngine`].
pub struct EngineBuilder {
    stores: Stores,
    provider: Arc<dyn LlmProvider>,
    sink: Arc<dyn StreamSink>,
    policy: Arc<dyn AccessPolicy>,
    bus: Arc<dyn ControlBus>,
    log: Arc<dyn StreamLog>,
    tools: Toolbox,
    budget: Option<Arc<dyn BudgetPolicy>>,
    files: Option<Arc<dyn FileStore>>,
    config: EngineConfig,
}

impl EngineBuilder {
    /// Offers a tool to the model (see [`Tool`]). Tools are called by name: each name once.
    ///
    /// # Panics
    ///
    /// When the tool's name is invalid or taken, or its parameters are not a valid JSON
    /// Schema: a mistake in the program, found at start-up (as axum does with routes that
    /// overlap). [`try_tool`](Self::try_tool) returns the error instead.
    pub fn tool(self, tool: impl Tool) -> Self {
        match self.try_tool(tool) {
            Ok(builder) => builder,
            Err(e) => panic!("{e}"),
        }
    }

    /// Offers a tool to the model, or says why it cannot be offered.
    pub fn try_tool(mut self, tool: impl Tool) -> Result<Self, crate::ToolboxError> {
        self.tools.add(Arc::new(tool))?;
        Ok(self)
    }

    /// Offers every tool of `tools` (replacing those added before).
    pub fn tools(mut self, tools: Toolbox) -> Self {
        self.tools = tools;
        self
    }

    /// Gives users token budgets (see [`BudgetPolicy`]; a fixed [`Budget`](crate::Budget)
    /// gives everyone the same). Without one, nothing is counted.
    pub fn budget(mut self, policy: impl BudgetPolicy) -> Self {
        self.budget = Some(Arc::new(policy));
        self
    }

    /// Takes files from users (`POST /api/chat/files`, `send_message.attachments`), kept in
    /// `store`. Without one, uploads and attachments are refused.
    pub fn files(mut self, store: Arc<dyn FileStore>) -> Self {
        self.files = Some(store);
        self
    }

    /// Replaces the in-process [`MemoryStreamLog`]: give every node of a cluster a log they
    /// all read (the Redis one of `marie-adapters`), so that a stream resumes on any node.
    pub fn stream_log(mut self, log: Arc<dyn StreamLog>) -> Self {
        self.log = log;
        self
    }

    /// Replaces the [`DefaultAccessPolicy`].
    pub fn policy(mut self, policy: Arc<dyn AccessPolicy>) -> Self {
        self.policy = policy;
        self
    }

    /// Replaces the default [`EngineConfig`].
    pub fn config(mut self, config: EngineConfig) -> Self {
        self.config = config;
        self
    }

    /// Replaces the in-process [`LocalControlBus`]: give every node of a cluster a bus that
    /// reaches the others (the Redis one of `marie-adapters`, for instance).
    pub fn control_bus(mut self, bus: Arc<dyn ControlBus>) -> Self {
        self.bus = bus;
        self
    }

    /// Builds the engine and subscribes it to the control bus.
    pub fn build(self) -> ChatEngine {
        let shared = Arc::new(EngineState {
            stores: self.stores,
            provider: self.provider,
            sink: self.sink,
            policy: self.policy,
            bus: self.bus,
            log: self.log,
            tools: self.tools,
            budget: self.budget,
            files: self.files,
            config: self.config,
            state: Mutex::new(LocalState::default()),
            tasks: TaskTracker::new(),
            interrupt: CancellationToken::new(),
        });
        // Weak: the bus outlives no engine because of its subscription.
        let weak = Arc::downgrade(&shared);
        shared.bus.subscribe(Arc::new(move |message| {
            if let Some(shared) = weak.upgrade() {
                ChatEngine { shared }.on_control(message);
            }
        }));
        ChatEngine { shared }
    }
}

impl ChatEngine {
    /// Starts building an engine from its three required backends: its stores (one
    /// [`RoomStore`](crate::RoomStore), or [`Stores`] given in parts), its model and where
    /// its answers' events go.
    pub fn builder(
        stores: impl Into<Stores>,
        provider: Arc<dyn LlmProvider>,
        sink: Arc<dyn StreamSink>,
    ) -> EngineBuilder {
        EngineBuilder {
            stores: stores.into(),
            provider,
            sink,
            policy: Arc::new(DefaultAccessPolicy),
            bus: Arc::new(LocalControlBus::new()),
            log: Arc::new(MemoryStreamLog::new()),
            tools: Toolbox::new(),
            budget: None,
            files: None,
            config: EngineConfig::default(),
        }
    }

    /// The tools the engine offers to the model.
    pub fn tools(&self) -> &Toolbox {
        &self.shared.tools
    }

    /// The stream log the engine records every numbered event in.
    pub fn stream_log(&self) -> &Arc<dyn StreamLog> {
        &self.shared.log
    }

    /// The stores the engine was built with.
    pub fn stores(&self) -> &Stores {
        &self.shared.stores
    }

    /// The engine's configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.shared.config
    }

    /// [`EngineConfig::answer_lease`], never so short that renewing it would spin.
    fn answer_lease(&self) -> Duration {
        self.shared
            .config
            .answer_lease
            .max(Duration::from_millis(100))
    }

    fn state(&self) -> MutexGuard<'_, LocalState> {
        // A panic while holding this lock cannot leave `LocalState` half-updated in a way that
        // matters more than refusing all further service, so keep going with the data.
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads a stream's log for `who` (`resume_stream`, the HTTP resume): at most `limit`
    /// events after `after_seq`. Access to the stream's conversation is checked again; when
    /// `conversation` is given, the stream must belong to it. `resume_unavailable` when the
    /// log cannot continue from `after_seq` (see [`check_resume`]).
    pub async fn read_stream(
        &self,
        who: &Identity,
        conversation: Option<&ConversationId>,
        stream_id: &StreamId,
        after_seq: u64,
        limit: usize,
    ) -> Result<LogRead, Error> {
        let read = self
            .shared
            .log
            .read(stream_id, after_seq, limit.max(1))
            .await?;
        if let Some(read) = &read {
            if conversation.is_some_and(|c| *c != read.meta.conversation_id) {
                return Err(Error::NotFound("no such stream in this conversation"));
            }
            self.authorize(who, &read.meta.conversation_id).await?;
        }
        check_resume(read, after_seq)
    }

    /// Checks that `who` may enter `conversation` and returns its record.
    pub async fn authorize(
        &self,
        who: &Identity,
        conversation: &ConversationId,
    ) -> Result<ConversationInfo, Error> {
        let info = self
            .shared
            .stores
            .conversations()
            .conversation(conversation)
            .await?
            .ok_or(Error::NotFound("no such conversation"))?;
        if !self
            .shared
            .policy
            .can_access(who, &info, self.shared.stores.conversations())
            .await?
        {
            return Err(Error::Forbidden(
                "you do not have access to this conversation",
            ));
        }
        Ok(info)
    }

    /// `join_conversation`: checks access (creating the conversation first when it does not
    /// exist and [`EngineConfig::create_on_join`] is set).
    pub async fn join(
        &self,
        who: &Identity,
        conversation: &ConversationId,
    ) -> Result<Joined, Error> {
        let stores = &self.shared.stores;
        let mut created = false;
        if self.shared.config.create_on_join
            && stores
                .conversations()
                .conversation(conversation)
                .await?
                .is_none()
        {
            created = stores
                .conversations()
                .create_conversation(ConversationInfo::new(
                    conversation.clone(),
                    who.user_id.clone(),
                    now_millis(),
                ))
                .await?;
        }
        let info = self.authorize(who, conversation).await?;
        let members = stores.conversations().members(conversation).await?;
        let active_stream = self.running_answer(conversation).await?;
        let queue = stores.send_queue().queued_sends(conversation).await?;
        if active_stream.is_none() && !queue.is_empty() && !self.is_shutting_down() {
            // Sends queued behind an answer whose node died wait for someone to look.
            let engine = self.clone();
            let conversation = conversation.clone();
            self.shared.tasks.spawn(async move {
                engine.start_queued(&conversation).await;
            });
        }
        let queued = queue
            .into_iter()
            .enumerate()
            .map(|(i, send)| SendQueued {
                conversation_id: send.conversation_id,
                stream_id: send.stream_id,
                message_id: send.message_id,
                user_id: send.user_id,
                message: send.message,
                position: i + 1,
            })
            .collect();
        Ok(Joined {
            conversation: info,
            created,
            members,
            active_stream,
            queued,
        })
    }

    /// `invite`: a user with access lets `user` in.
    pub async fn invite(
        &self,
        who: &Identity,
        conversation: &ConversationId,
        user: &UserId,
    ) -> Result<(), Error> {
        let info = self.authorize(who, conversation).await?;
        if !self
            .shared
            .policy
            .can_invite(who, &info, self.shared.stores.conversations())
            .await?
        {
            return Err(Error::Forbidden(
                "you may not invite users to this conversation",
            ));
        }
        self.shared
            .stores
            .conversations()
            .grant_access(conversation, user)
            .await?;
        // The invitee's list gains it, and the members' panels show them, on every node.
        self.tell_updated(&info, Some(&who.user_id)).await;
        Ok(())
    }

    /// The answer running in `conversation` on any node, if any, with the approval it waits
    /// for: this node's own answers are answered from memory, the others from the store's
    /// answer lease (whose `seq` may lag a little behind the last chunk sent) and approvals.
    pub async fn running_answer(
        &self,
        conversation: &ConversationId,
    ) -> Result<Option<ActiveStream>, Error> {
        if let Some(local) = self.active_stream(conversation) {
            return Ok(Some(local));
        }
        let stores = &self.shared.stores;
        let Some(lease) = stores.answer_leases().active_answer(conversation).await? else {
            return Ok(None);
        };
        let waiting = stores
            .approvals()
            .pending_approval(conversation)
            .await?
            .map(|record| record.request)
            .filter(|request| request.stream_id == lease.stream_id);
        Ok(Some(ActiveStream::waiting_for(
            lease.stream_id,
            lease.seq,
            waiting,
        )))
    }

    /// The answer running in `conversation` on this node, if any.
    pub fn active_stream(&self, conversation: &ConversationId) -> Option<ActiveStream> {
        self.state().answers.get(conversation).map(|a| {
            ActiveStream::waiting_for(
                a.stream_id.clone(),
                a.seq.load(Ordering::Acquire),
                a.approvals.pending(),
            )
        })
    }

    /// `cancel_stream`: stops the running answer (the one named, when `stream_id` is given),
    /// or takes the queued send of `stream_id` out of its queue.
    pub async fn cancel(
        &self,
        who: &Identity,
        conversation: &ConversationId,
        stream_id: Option<&StreamId>,
    ) -> Result<StreamId, Error> {
        self.authorize(who, conversation).await?;
        if let Some(running) = self.cancel_running(conversation, stream_id).await? {
            return Ok(running);
        }
        // A queued send is taken out of its queue.
        if let Some(stream_id) = stream_id
            && self.cancel_queued(conversation, stream_id).await?
        {
            return Ok(stream_id.clone());
        }
        Err(Error::NotFound("no such running answer"))
    }

    /// Stops the answer running in `conversation` (the one named, when `stream_id` is
    /// given), on this node at once or on its own node over the control bus; the answer
    /// stopped, `None` when none runs.
    async fn cancel_running(
        &self,
        conversation: &ConversationId,
        stream_id: Option<&StreamId>,
    ) -> Result<Option<StreamId>, Error> {
        let matches = |running: &StreamId| stream_id.is_none_or(|id| id == running);
        // An answer of this node stops at once.
        {
            let state = self.state();
            if let Some(running) = state
                .answers
                .get(conversation)
                .filter(|a| matches(&a.stream_id))
            {
                running.cancel.cancel();
                return Ok(Some(running.stream_id.clone()));
            }
        }
        // One running elsewhere is stopped by its node, told over the control bus.
        let running = self
            .shared
            .stores
            .answer_leases()
            .active_answer(conversation)
            .await?
            .filter(|a| matches(&a.stream_id));
        let Some(running) = running else {
            return Ok(None);
        };
        self.shared
            .bus
            .publish(ControlMessage::CancelAnswer {
                conversation_id: conversation.clone(),
                stream_id: running.stream_id.clone(),
            })
            .await?;
        Ok(Some(running.stream_id))
    }

    /// Acts on a message of the control bus.
    fn on_control(&self, message: ControlMessage) {
        match message {
            ControlMessage::CancelAnswer {
                conversation_id,
                stream_id,
            } => {
                self.with_local_answer(&conversation_id, &stream_id, |running| {
                    tracing::debug!(%stream_id, "answer cancelled from another node");
                    running.cancel.cancel();
                });
            }
            ControlMessage::ApprovalDecided {
                conversation_id,
                stream_id,
            } => {
                self.with_local_answer(&conversation_id, &stream_id, |running| {
                    running.approvals.wake();
                });
            }
            // Meant for the front ends (cross-node delivery of stream events and notices).
            ControlMessage::Stream { .. } | ControlMessage::Notice { .. } => {}
        }
    }

    /// Calls `f` with the answer `stream_id` of `conversation` when it runs on this node;
    /// returns whether it does. `f` runs under the state's lock: it must be quick.
    fn with_local_answer(
        &self,
        conversation: &ConversationId,
        stream_id: &StreamId,
        f: impl FnOnce(&RunningAnswer),
    ) -> bool {
        let state = self.state();
        let running = state
            .answers
            .get(conversation)
            .filter(|a| a.stream_id == *stream_id);
        running.map(f).is_some()
    }

    /// `get_history`: the newest `limit` messages before `before`, oldest first. `limit`
    /// defaults to [`EngineConfig::default_history_page`] and is capped at
    /// [`EngineConfig::max_history_page`]; 0 asks for none.
    pub async fn history(
        &self,
        who: &Identity,
        conversation: &ConversationId,
        before: Option<MessageId>,
        limit: Option<usize>,
    ) -> Result<Vec<ChatMessage>, Error> {
        self.authorize(who, conversation).await?;
        let config = &self.shared.config;
        let limit = limit
            .unwrap_or(config.default_history_page)
            .min(config.max_history_page);
        if limit == 0 {
            return Ok(Vec::new());
        }
        Ok(self
            .shared
            .stores
            .history()
            .history(conversation, HistoryQuery { before, limit })
            .await?)
    }

    /// The conversations of `who`'s session `previous` that `who` may still enter, to restore
    /// them on a reconnect; `None` when the session is unknown, expired or someone else's.
    /// Access is checked again for each: it may have been revoked meanwhile.
    pub async fn restore_session(
        &self,
        who: &Identity,
        previous: &SessionId,
    ) -> Result<Option<Vec<ConversationId>>, Error> {
        let Some(record) = self.shared.stores.sessions().session(previous).await? else {
            return Ok(None);
        };
        if record.user_id != who.user_id {
            return Ok(None);
        }
        let mut rooms = Vec::with_capacity(record.rooms.len());
        for conversation in record.rooms {
            if self.authorize(who, &conversation).await.is_ok() {
                rooms.push(conversation);
            }
        }
        Ok(Some(rooms))
    }

    /// Records that `who`'s connection with the resume handle `session` is in `rooms`, for a
    /// later [`restore_session`](Self::restore_session), until `ttl` from now.
    pub async fn save_session(
        &self,
        who: &Identity,
        session: &SessionId,
        rooms: Vec<ConversationId>,
        ttl: Duration,
    ) -> Result<(), Error> {
        let ttl = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let record = SessionRecord {
            session_id: session.clone(),
            user_id: who.user_id.clone(),
            rooms,
            expires_at: now_millis().saturating_add(ttl),
        };
        Ok(self.shared.stores.sessions().put_session(record).await?)
    }

    /// `get_usage`: the caller's token figures for the current period of their budget.
    pub async fn usage(&self, who: &Identity) -> Result<UsageReport, Error> {
        let Some((budget, window, used)) = self.spent(who).await? else {
            return Ok(UsageReport {
                used: 0,
                limit: None,
                period: None,
                resets_at: None,
            });
        };
        Ok(UsageReport {
            used,
            limit: Some(budget.limit),
            period: Some(budget.period),
            resets_at: Some(window.end),
        })
    }

    /// The budget of `who`, if they have one, its current window and what they have used
    /// in it.
    async fn spent(
        &self,
        who: &Identity,
    ) -> Result<Option<(crate::Budget, crate::UsageWindow, u64)>, Error> {
        let Some(policy) = &self.shared.budget else {
            return Ok(None);
        };
        let Some(budget) = policy.budget(who).await? else {
            return Ok(None);
        };
        let window = budget.period.window(now_millis());
        let ledger = self.shared.stores.usage_ledger();
        let used = ledger.usage(&who.user_id, window).await?;
        Ok(Some((budget, window, used)))
    }

    /// What an answer of `who` may spend: `budget_exceeded` when nothing is left.
    async fn allowance(&self, who: &Identity) -> Result<Option<answer::Allowance>, Error> {
        let Some((budget, window, used)) = self.spent(who).await? else {
            return Ok(None);
        };
        if used >= budget.limit {
            return Err(Error::BudgetExceeded {
                used,
                limit: budget.limit,
                resets_at: window.end,
            });
        }
        Ok(Some(answer::Allowance {
            window,
            remaining: budget.limit - used,
        }))
    }

    /// Readiness (`GET /readyz`): `Ok` when the store answers and the engine takes answers.
    pub async fn ready(&self) -> Result<(), Error> {
        if self.is_shutting_down() {
            return Err(Error::ShuttingDown);
        }
        // Any read will do, and one that finds nothing costs least; reading changes nothing,
        // even if a client did name a conversation so.
        let probe = ConversationId::parse("__readyz__")?;
        self.shared
            .stores
            .conversations()
            .conversation(&probe)
            .await?;
        Ok(())
    }

    /// `system_announcement`: checks that `who` is an admin and the message fits.
    pub fn authorize_announcement(&self, who: &Identity, message: &str) -> Result<(), Error> {
        if !who.is_admin() {
            return Err(Error::Forbidden("only admins may send announcements"));
        }
        self.check_message(message)
    }

    /// A message must hold some text and fit [`EngineConfig::max_message_bytes`].
    fn check_message(&self, message: &str) -> Result<(), Error> {
        if message.trim().is_empty() {
            return Err(Error::BadRequest("message must not be empty".into()));
        }
        self.check_message_size(message)
    }

    /// A message must fit [`EngineConfig::max_message_bytes`].
    fn check_message_size(&self, message: &str) -> Result<(), Error> {
        let max = self.shared.config.max_message_bytes;
        if message.len() > max {
            return Err(Error::PayloadTooLarge(format!(
                "message is longer than {max} bytes"
            )));
        }
        Ok(())
    }

    /// Whether [`shutdown`](Self::shutdown) has begun: no new answer is taken.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.tasks.is_closed()
    }

    /// How many answers are running now.
    pub fn running_answers(&self) -> usize {
        self.state().answers.len()
    }

    /// Graceful shutdown: refuses new answers, lets running ones finish for up to `grace`,
    /// then ends the rest with `stream_end {status:"interrupted"}` and waits for them.
    pub async fn shutdown(&self, grace: Duration) {
        self.shared.tasks.close();
        if tokio::time::timeout(grace, self.shared.tasks.wait())
            .await
            .is_err()
        {
            tracing::info!(
                running = self.running_answers(),
                "shutdown grace period over, interrupting answers"
            );
            self.shared.interrupt.cancel();
            self.shared.tasks.wait().await;
        }
    }

    /// Frees the conversation after an answer: on this node, then in the store.
    async fn finish(&self, conversation: &ConversationId, stream_id: &StreamId) {
        {
            let mut state = self.state();
            if state
                .answers
                .get(conversation)
                .is_some_and(|a| a.stream_id == *stream_id)
            {
                state.answers.remove(conversation);
            }
        }
        self.release(conversation, stream_id).await;
    }

    /// Gives the answer's lease back. When the store is away, keeps trying in the background
    /// until the lease would have lapsed anyway, so that the conversation is free as soon as
    /// the store is back.
    async fn release(&self, conversation: &ConversationId, stream_id: &StreamId) {
        let leases = self.shared.stores.answer_leases();
        let Err(e) = leases.release_answer(conversation, stream_id).await else {
            return;
        };
        let store = self.shared.stores.shared_answer_leases();
        tracing::warn!(error = %e, %stream_id, "could not release the answer's lease; retrying");
        let lease = self.answer_lease();
        let (conversation, stream_id) = (conversation.clone(), stream_id.clone());
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + lease;
            let mut pause = Duration::from_millis(100);
            while tokio::time::Instant::now() < deadline {
                tokio::time::sleep(pause).await;
                if store
                    .release_answer(&conversation, &stream_id)
                    .await
                    .is_ok()
                {
                    tracing::info!(%stream_id, "released the answer's lease");
                    return;
                }
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        });
    }
}

impl std::fmt::Debug for ChatEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatEngine")
            .field("provider", &self.shared.provider.name())
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}
