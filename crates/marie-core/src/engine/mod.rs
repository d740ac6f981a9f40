//! The chat engine: every client command, with the caller's [`Identity`], in one place.
//!
//! Front ends (the Socket.IO handlers, the HTTP fallback) decode a request, call one method
//! here and turn the `Result` into their own wire format. The engine knows nothing of
//! sockets: it talks to the world through the four backends it was built with.

mod answer;
mod config;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::EngineConfig;

use crate::{
    AccessPolicy, ChatMessage, ControlBus, ControlMessage, ConversationId, ConversationInfo,
    DefaultAccessPolicy, Error, HistoryQuery, Identity, LlmProvider, LlmRequest, LocalControlBus,
    LogRead, MemoryStreamLog, MessageId, MessageRole, PromptMessage, RoomStore, StreamId,
    StreamLog, StreamSink, UserId, check_resume, now_millis,
};

/// A running answer, as `joined.active_stream` reports it and as the store's answer lease
/// records it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ActiveStream {
    /// The answer.
    pub stream_id: StreamId,
    /// The last `seq` sent so far.
    pub seq: u64,
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
}

/// A `send_message` command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendRequest {
    /// Where to send.
    pub conversation_id: ConversationId,
    /// The user's text.
    pub message: String,
    /// `true`: stream the answer; `false`: one `message_response`.
    pub stream: bool,
    /// Makes the send idempotent: a repeat answers with the first outcome.
    pub client_message_id: Option<String>,
}

/// The outcome of a send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendOutcome {
    /// The stored user message.
    pub message_id: MessageId,
    /// The answer that was started.
    pub stream_id: StreamId,
    /// `true` when this was a repeat of an earlier `client_message_id` and started nothing.
    pub duplicate: bool,
}

/// Runs conversations: access, history, and one answer at a time per conversation.
///
/// Cheap to clone: every clone shares the same state.
///
/// ## On several nodes
///
/// Engines on several nodes cooperate through what they share: the [`RoomStore`] holds a
/// lease per running answer (so `busy` and `joined.active_stream` hold cluster-wide), and
/// the [`ControlBus`] carries `cancel_stream` to the node that runs the answer. With the
/// defaults (an in-process bus) the engine serves one node.
#[derive(Clone)]
pub struct ChatEngine {
    shared: Arc<Shared>,
}

struct Shared {
    store: Arc<dyn RoomStore>,
    provider: Arc<dyn LlmProvider>,
    sink: Arc<dyn StreamSink>,
    policy: Arc<dyn AccessPolicy>,
    bus: Arc<dyn ControlBus>,
    log: Arc<dyn StreamLog>,
    config: EngineConfig,
    state: Mutex<State>,
    tasks: TaskTracker,
    /// Cancelled when shutdown's grace period is over: running answers end `interrupted`.
    interrupt: CancellationToken,
}

/// Guarded by a `std::sync::Mutex` that is never held across an `.await`.
#[derive(Default)]
struct State {
    answers: HashMap<ConversationId, RunningAnswer>,
    sent: IdempotencyCache,
}

/// An answer running on this node.
struct RunningAnswer {
    stream_id: StreamId,
    cancel: CancellationToken,
    seq: Arc<AtomicU64>,
}

/// Outcomes of recent sends by `(conversation, user, client_message_id)`, oldest evicted
/// first once `capacity` is reached.
#[derive(Default)]
struct IdempotencyCache {
    outcomes: HashMap<(ConversationId, UserId, String), SendOutcome>,
    order: VecDeque<(ConversationId, UserId, String)>,
}

impl IdempotencyCache {
    fn insert(&mut self, key: (ConversationId, UserId, String), outcome: SendOutcome, cap: usize) {
        if self.outcomes.insert(key.clone(), outcome).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > cap {
            if let Some(old) = self.order.pop_front() {
                self.outcomes.remove(&old);
            }
        }
    }

    fn remove(&mut self, key: &(ConversationId, UserId, String)) {
        self.outcomes.remove(key);
        self.order.retain(|k| k != key);
    }
}

/// Builds a [`ChatEngine`].
pub struct EngineBuilder {
    store: Arc<dyn RoomStore>,
    provider: Arc<dyn LlmProvider>,
    sink: Arc<dyn StreamSink>,
    policy: Arc<dyn AccessPolicy>,
    bus: Arc<dyn ControlBus>,
    log: Arc<dyn StreamLog>,
    config: EngineConfig,
}

impl EngineBuilder {
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
        let shared = Arc::new(Shared {
            store: self.store,
            provider: self.provider,
            sink: self.sink,
            policy: self.policy,
            bus: self.bus,
            log: self.log,
            config: self.config,
            state: Mutex::new(State::default()),
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
    /// Starts building an engine from its three required backends.
    pub fn builder(
        store: Arc<dyn RoomStore>,
        provider: Arc<dyn LlmProvider>,
        sink: Arc<dyn StreamSink>,
    ) -> EngineBuilder {
        EngineBuilder {
            store,
            provider,
            sink,
            policy: Arc::new(DefaultAccessPolicy),
            bus: Arc::new(LocalControlBus::new()),
            log: Arc::new(MemoryStreamLog::new()),
            config: EngineConfig::default(),
        }
    }

    /// The stream log the engine records every chunk in.
    pub fn stream_log(&self) -> &Arc<dyn StreamLog> {
        &self.shared.log
    }

    /// Reads a stream's log for `who` (`resume_stream`, the HTTP resume): at most `limit`
    /// chunks after `after_seq`. Access to the stream's conversation is checked again; when
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

    /// The store the engine was built with.
    pub fn store(&self) -> &Arc<dyn RoomStore> {
        &self.shared.store
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

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave `State` half-updated in a way that
        // matters more than refusing all further service, so keep going with the data.
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks that `who` may enter `conversation` and returns its record.
    pub async fn authorize(
        &self,
        who: &Identity,
        conversation: &ConversationId,
    ) -> Result<ConversationInfo, Error> {
        let info = self
            .shared
            .store
            .conversation(conversation)
            .await?
            .ok_or(Error::NotFound("no such conversation"))?;
        if !self
            .shared
            .policy
            .can_access(who, &info, self.shared.store.as_ref())
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
        let store = &self.shared.store;
        let mut created = false;
        if self.shared.config.create_on_join && store.conversation(conversation).await?.is_none() {
            created = store
                .create_conversation(ConversationInfo {
                    conversation_id: conversation.clone(),
                    created_by: who.user_id.clone(),
                    created_at: now_millis(),
                })
                .await?;
        }
        let info = self.authorize(who, conversation).await?;
        let members = store.members(conversation).await?;
        let active_stream = self.running_answer(conversation).await?;
        Ok(Joined {
            conversation: info,
            created,
            members,
            active_stream,
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
            .can_invite(who, &info, self.shared.store.as_ref())
            .await?
        {
            return Err(Error::Forbidden(
                "you may not invite users to this conversation",
            ));
        }
        self.shared.store.grant_access(conversation, user).await?;
        Ok(())
    }

    /// The answer running in `conversation` on any node, if any: this node's own answers are
    /// answered from memory, the others from the store's answer lease (whose `seq` may lag a
    /// little behind the last chunk sent).
    pub async fn running_answer(
        &self,
        conversation: &ConversationId,
    ) -> Result<Option<ActiveStream>, Error> {
        if let Some(local) = self.active_stream(conversation) {
            return Ok(Some(local));
        }
        Ok(self.shared.store.active_answer(conversation).await?)
    }

    /// The answer running in `conversation` on this node, if any.
    pub fn active_stream(&self, conversation: &ConversationId) -> Option<ActiveStream> {
        self.state()
            .answers
            .get(conversation)
            .map(|a| ActiveStream {
                stream_id: a.stream_id.clone(),
                seq: a.seq.load(Ordering::Acquire),
            })
    }

    /// `send_message`: stores the user's message and starts the answer in a background task.
    ///
    /// Returns as soon as the answer is started; its events go to the sink.
    pub async fn send(&self, who: &Identity, request: SendRequest) -> Result<SendOutcome, Error> {
        let config = &self.shared.config;
        self.check_message(&request.message)?;
        // Held until the answer task is spawned or this send gives up, so that a shutdown that
        // starts meanwhile waits for this answer instead of returning without it. The token and
        // `is_closed` use the tracker's one atomic, so there is no gap between the two.
        let _in_flight = self.shared.tasks.token();
        if self.shared.tasks.is_closed() {
            return Err(Error::ShuttingDown);
        }
        let conversation = request.conversation_id.clone();
        self.authorize(who, &conversation).await?;

        let idempotency_key = request
            .client_message_id
            .clone()
            .map(|id| (conversation.clone(), who.user_id.clone(), id));
        let user_message = ChatMessage::now(
            MessageRole::User,
            request.message.clone(),
            Some(who.user_id.clone()),
        );
        let outcome = SendOutcome {
            message_id: user_message.message_id.clone(),
            stream_id: StreamId::random(),
            duplicate: false,
        };
        let cancel = CancellationToken::new();
        let seq = Arc::new(AtomicU64::new(0));
        let progress = Arc::new(Notify::new());

        // Check for a repeat and reserve the conversation in one critical section, so that
        // two concurrent sends on this node can neither both start nor both be told
        // "duplicate". The store's lease then arbitrates between nodes.
        {
            let mut state = self.state();
            if let Some(first) = idempotency_key
                .as_ref()
                .and_then(|key| state.sent.outcomes.get(key))
            {
                return Ok(SendOutcome {
                    duplicate: true,
                    ..first.clone()
                });
            }
            if state.answers.contains_key(&conversation) {
                return Err(Error::Busy);
            }
            state.answers.insert(
                conversation.clone(),
                RunningAnswer {
                    stream_id: outcome.stream_id.clone(),
                    cancel: cancel.clone(),
                    seq: seq.clone(),
                },
            );
            if let Some(key) = &idempotency_key {
                state
                    .sent
                    .insert(key.clone(), outcome.clone(), config.idempotency_capacity);
            }
        }

        let give_up = |engine: &Self| {
            let mut state = engine.state();
            state.answers.remove(&conversation);
            if let Some(key) = &idempotency_key {
                state.sent.remove(key);
            }
        };
        match self
            .shared
            .store
            .claim_answer(&conversation, &outcome.stream_id, self.answer_lease())
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                give_up(self);
                return Err(Error::Busy);
            }
            Err(e) => {
                give_up(self);
                return Err(e.into());
            }
        }

        let prepared = self.prepare_request(who, &conversation, user_message).await;
        let llm_request = match prepared {
            Ok(r) => r,
            Err(e) => {
                give_up(self);
                self.release(&conversation, &outcome.stream_id).await;
                return Err(e);
            }
        };

        let job = answer::AnswerJob {
            conversation_id: conversation,
            stream_id: outcome.stream_id.clone(),
            message_id: MessageId::new_time_ordered(),
            prompt_tokens: llm_request
                .messages
                .iter()
                .map(|m| crate::estimate_tokens(&m.content))
                .sum(),
            streamed: request.stream,
            cancel,
            seq,
            progress,
        };
        if job.streamed {
            // Opened before the answer starts, so that a follower that reads the log as soon
            // as `send` returns (the HTTP fallback) finds it.
            let meta = crate::StreamMeta {
                conversation_id: job.conversation_id.clone(),
                stream_id: job.stream_id.clone(),
                message_id: job.message_id.clone(),
            };
            if let Err(e) = self.shared.log.open(&meta).await {
                tracing::warn!(error = %e, stream_id = %job.stream_id, "could not open the stream log");
            }
        }
        let engine = self.clone();
        self.shared
            .tasks
            .spawn(answer::run(engine, job, llm_request));
        Ok(outcome)
    }

    /// Stores the user's message and builds the model request from the history.
    async fn prepare_request(
        &self,
        who: &Identity,
        conversation: &ConversationId,
        user_message: ChatMessage,
    ) -> Result<LlmRequest, Error> {
        let store = &self.shared.store;
        let config = &self.shared.config;
        store.append_message(conversation, user_message).await?;
        let history = store
            .prompt_history(conversation, config.history_window.max(1))
            .await?;
        let messages = match &config.system_prompt {
            Some(prompt) => {
                let mut messages = Vec::with_capacity(history.len() + 1);
                messages.push(PromptMessage {
                    role: MessageRole::System,
                    content: prompt.clone(),
                });
                messages.extend(history);
                messages
            }
            None => history,
        };
        Ok(LlmRequest {
            conversation_id: conversation.clone(),
            user_id: who.user_id.clone(),
            messages,
        })
    }

    /// `cancel_stream`: stops the running answer (the one named, when `stream_id` is given).
    pub async fn cancel(
        &self,
        who: &Identity,
        conversation: &ConversationId,
        stream_id: Option<&StreamId>,
    ) -> Result<StreamId, Error> {
        self.authorize(who, conversation).await?;
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
                return Ok(running.stream_id.clone());
            }
        }
        // One running elsewhere is stopped by its node, told over the control bus.
        let running = self
            .shared
            .store
            .active_answer(conversation)
            .await?
            .filter(|a| matches(&a.stream_id))
            .ok_or(Error::NotFound("no such running answer"))?;
        self.shared
            .bus
            .publish(ControlMessage::CancelAnswer {
                conversation_id: conversation.clone(),
                stream_id: running.stream_id.clone(),
            })
            .await?;
        Ok(running.stream_id)
    }

    /// Acts on a message of the control bus.
    fn on_control(&self, message: ControlMessage) {
        match message {
            ControlMessage::CancelAnswer {
                conversation_id,
                stream_id,
            } => {
                let state = self.state();
                if let Some(running) = state
                    .answers
                    .get(&conversation_id)
                    .filter(|a| a.stream_id == stream_id)
                {
                    tracing::debug!(%stream_id, "answer cancelled from another node");
                    running.cancel.cancel();
                }
            }
            // Meant for the front ends (cross-node delivery of stream events).
            ControlMessage::StreamEvent { .. } => {}
        }
    }

    /// `get_history`: the newest `limit` messages before `before`, oldest first.
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
            .clamp(1, config.max_history_page);
        Ok(self
            .shared
            .store
            .history(conversation, HistoryQuery { before, limit })
            .await?)
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
        let max = self.shared.config.max_message_bytes;
        if message.trim().is_empty() {
            return Err(Error::BadRequest("message must not be empty".into()));
        }
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
        let store = self.shared.store.clone();
        let Err(e) = store.release_answer(conversation, stream_id).await else {
            return;
        };
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
