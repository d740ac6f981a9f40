//! `send_message`: from the checks to the spawned answer, in named steps.
//!
//! 1. [`ChatEngine::send`] checks the message and its files; [`ChatEngine::start`] (where
//!    edits and regenerations also end) checks that the engine takes answers, access and the
//!    budget.
//! 2. [`ChatEngine::claim`]: [`ChatEngine::reserve`] answers a repeated `client_message_id`
//!    with its first outcome, or reserves the conversation on this node (`busy` if an answer
//!    runs here); [`Reservation::claim_lease`] takes the conversation's lease in the store
//!    (`busy` if an answer runs on another node). While busy, `on_busy` decides: refuse,
//!    queue (`queue.rs`), or interrupt and claim again.
//! 3. [`ChatEngine::take_turn`]: a queued send whose turn came leaves its queue.
//! 4. [`ChatEngine::prepare_request`] stores the user's message (after the active branch's
//!    leaf, or beside the message edited) and builds the model's request from the active
//!    branch.
//! 5. The answer's log is opened, the reservation handed to the answer's task, which is
//!    spawned; `start` returns.
//!
//! A send that gives up after step 2 (an error, or its future dropped) frees what it held:
//! that is the [`Reservation`]'s job.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::assistants::{Answering, who_answers};
use super::group::Place;
use super::idempotency::Key;
use super::{ChatEngine, RunningAnswer, answer};
use crate::{
    Attachment, ChatMessage, ConversationId, ConversationInfo, Error, FileId, HistoryQuery,
    Identity, LastMessage, LlmRequest, MessageId, MessageRole, PromptMessage, QueuedSend, StreamId,
    StreamMeta,
};

/// What `send_message` does while an answer runs in its conversation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OnBusy {
    /// Refuse it: `busy` (protocol v1).
    #[default]
    Reject,
    /// Queue it: it is answered after the running answer and those queued before it, on
    /// whichever node ends the answer before it.
    Enqueue,
    /// Cancel the running answer (it ends `cancelled`, its partial text stored) and answer
    /// this one.
    Interrupt,
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
    /// What to do while an answer runs; `None`: [`EngineConfig::on_busy`](crate::EngineConfig::on_busy).
    pub on_busy: Option<OnBusy>,
    /// Files the sender uploaded to this conversation, to go with the message (at most
    /// [`EngineConfig::max_attachments`](crate::EngineConfig::max_attachments)).
    pub attachments: Vec<FileId>,
    /// Whether the model answers this message, whatever the conversation's
    /// [`AnswerPolicy`](crate::AnswerPolicy) says; `None`: as it says.
    pub answer: Option<bool>,
    /// Tools the sender's client runs, offered to the model for this answer
    /// (`docs/protocol.md` section 11): checked with [`ClientTools::new`](crate::ClientTools::new).
    pub client_tools: Vec<crate::ToolSpec>,
}

/// The outcome of a send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendOutcome {
    /// The stored user message.
    pub message_id: MessageId,
    /// The assistant message the answer becomes (`stream_start.message_id`).
    pub answer_message_id: MessageId,
    /// The answer that was started (or will be, when queued).
    pub stream_id: StreamId,
    /// `true` when this was a repeat of an earlier `client_message_id` and started nothing.
    pub duplicate: bool,
    /// The send's place in the queue (1: next) when it was queued (`on_busy: "enqueue"`)
    /// rather than answered at once; its message is stored when its turn comes.
    pub queued: Option<usize>,
    /// `false` when the message was stored and told to the room without an answer (its
    /// conversation's answer policy, or `answer:false`): `answer_message_id` and `stream_id`
    /// then name nothing.
    pub answered: bool,
    /// The named assistant that answers (`stream_start.assistant`), when the app declares
    /// some.
    pub assistant: Option<String>,
}

/// The ids of a new send.
pub(super) fn new_outcome() -> SendOutcome {
    SendOutcome {
        message_id: MessageId::new_time_ordered(),
        answer_message_id: MessageId::new_time_ordered(),
        stream_id: StreamId::random(),
        duplicate: false,
        queued: None,
        answered: true,
        assistant: None,
    }
}

/// An answer to start, and what it answers.
pub(super) struct Start {
    pub(super) conversation: ConversationId,
    pub(super) question: Question,
    /// `true`: stream the answer; `false`: one `message_response`.
    pub(super) streamed: bool,
    pub(super) client_message_id: Option<String>,
    pub(super) on_busy: OnBusy,
    /// A queued send whose turn has come: its ids were given when it was queued.
    pub(super) queued: Option<QueuedSend>,
    /// `send_message.answer`: answer it or not, whatever the conversation's policy says.
    pub(super) answer: Option<bool>,
    /// Of a regeneration: the assistant that wrote the answer replaced, who answers again.
    pub(super) assistant: Option<String>,
    /// Tools the sender's client runs, for this answer.
    pub(super) client_tools: crate::ClientTools,
}

/// What an answer is set up with when it starts: its conversation's settings, read once, and
/// the client tools of its send.
#[derive(Clone, Debug, Default)]
pub(super) struct AnswerSetup {
    /// The model to ask ([`EngineConfig::model_for`](crate::EngineConfig::model_for)).
    pub(super) model: Option<String>,
    /// The conversation's own system prompt.
    pub(super) system_prompt: Option<String>,
    /// Whether the conversation had no title: it is named after this answer.
    pub(super) untitled: bool,
    /// The named assistant that answers (`None`: the app declares none).
    pub(super) assistant: Option<crate::Assistant>,
    /// The conversation's members when there is more than one (a group): the model is told
    /// who wrote each message. Empty for a conversation of one.
    pub(super) group: Vec<crate::UserId>,
    /// Tools the sender's client runs: offered with the server's, their calls answered by a
    /// member (`answer/client.rs`).
    pub(super) client_tools: crate::ClientTools,
}

/// What an answer answers.
pub(super) enum Question {
    /// `send_message`: a new user message at the end of the active branch.
    New {
        text: String,
        attachments: Vec<Attachment>,
    },
    /// `edit_message`: a new user message after `parent`, beside the message edited.
    Edit {
        text: String,
        parent: Option<MessageId>,
        attachments: Vec<Attachment>,
    },
    /// `regenerate`: a stored user message, answered again. The new answer goes beside
    /// `replaces`; with `None`, the user message is the active branch's leaf (its answer
    /// failed before it said anything).
    Again {
        user_message: MessageId,
        replaces: Option<MessageId>,
    },
}

/// What [`ChatEngine::claim`] got.
enum Claim<'a> {
    /// The conversation is this answer's: reserved on this node, leased in the store.
    Answer(Reservation<'a>),
    /// The same `client_message_id` was sent before: its first outcome.
    Repeat(SendOutcome),
    /// An answer runs and the send asked to wait its turn.
    Queue,
}

/// What [`ChatEngine::reserve`] found.
enum Reserved<'a> {
    /// The same `client_message_id` was sent before: its first outcome, marked duplicate.
    Repeat(SendOutcome),
    /// The conversation is now reserved for this send's answer.
    New(Reservation<'a>),
}

/// A conversation reserved for one answer, from the check for `busy` until the answer's task
/// owns it ([`commit`](Self::commit)). Dropped before that, it frees the conversation on this
/// node and its lease in the store, and forgets the send's `client_message_id`, so that a
/// retry is not taken for a repeat of a send that started nothing.
struct Reservation<'a> {
    engine: &'a ChatEngine,
    conversation: ConversationId,
    key: Option<Key>,
    outcome: SendOutcome,
    cancel: CancellationToken,
    seq: Arc<AtomicU64>,
    approvals: Arc<answer::Approvals>,
    leased: bool,
    committed: bool,
}

impl Reservation<'_> {
    /// Takes the conversation's lease in the store, which arbitrates between nodes.
    async fn claim_lease(&mut self) -> Result<(), Error> {
        let claimed = self
            .engine
            .shared
            .stores
            .answer_leases()
            .claim_answer(
                &self.conversation,
                &self.outcome.stream_id,
                self.engine.answer_lease(),
            )
            .await?;
        if !claimed {
            return Err(Error::Busy);
        }
        self.leased = true;
        Ok(())
    }

    /// The job of the answer's task: what it answers and how (`answered`: the user message
    /// answered, with the history query the request was built from, as `prepare_request`
    /// gives them).
    fn job(
        &self,
        who: &Identity,
        (answered, prompt, at_leaf): (MessageId, HistoryQuery, bool),
        request: &LlmRequest,
        streamed: bool,
        budget: Option<answer::Allowance>,
        setup: AnswerSetup,
    ) -> answer::AnswerJob {
        answer::AnswerJob {
            conversation_id: self.conversation.clone(),
            user_id: who.user_id.clone(),
            stream_id: self.outcome.stream_id.clone(),
            message_id: self.outcome.answer_message_id.clone(),
            parent_id: answered,
            at_leaf,
            prompt,
            prompt_tokens: request
                .messages
                .iter()
                .map(|m| crate::estimate_tokens(&m.content))
                .sum(),
            streamed,
            cancel: self.cancel.clone(),
            seq: self.seq.clone(),
            progress: Arc::new(Notify::new()),
            approvals: self.approvals.clone(),
            budget,
            setup,
            client_calls: std::sync::Mutex::default(),
        }
    }

    /// The answer's task owns the conversation from now on.
    fn commit(mut self) {
        self.committed = true;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        {
            let mut state = self.engine.state();
            let ours = |a: &RunningAnswer| a.stream_id == self.outcome.stream_id;
            if state.answers.get(&self.conversation).is_some_and(ours) {
                state.answers.remove(&self.conversation);
            }
            if let Some(key) = &self.key {
                state.sent.remove(key);
            }
        }
        if self.leased {
            let engine = self.engine.clone();
            let (conversation, stream_id) =
                (self.conversation.clone(), self.outcome.stream_id.clone());
            tokio::spawn(async move { engine.release(&conversation, &stream_id).await });
        }
    }
}

impl ChatEngine {
    /// `send_message`: stores the user's message and starts the answer in a background task.
    ///
    /// Returns as soon as the answer is started; its events go to the sink.
    pub async fn send(&self, who: &Identity, request: SendRequest) -> Result<SendOutcome, Error> {
        if request.attachments.is_empty() || !request.message.trim().is_empty() {
            self.check_message(&request.message)?;
        } else {
            // Files alone make a message: only the size of its (empty) text is checked.
            self.check_message_size(&request.message)?;
        }
        let SendRequest {
            conversation_id,
            message,
            stream,
            client_message_id,
            on_busy,
            attachments,
            answer,
            client_tools,
        } = request;
        let client_tools = crate::ClientTools::new(client_tools, &self.shared.tools)
            .map_err(|e| Error::BadRequest(format!("client_tools: {e}")))?;
        let attachments = self.attachable(who, &conversation_id, &attachments).await?;
        let start = Start {
            conversation: conversation_id,
            question: Question::New {
                text: message,
                attachments,
            },
            streamed: stream,
            client_message_id,
            on_busy: on_busy.unwrap_or(self.shared.config.on_busy),
            queued: None,
            answer,
            assistant: None,
            client_tools,
        };
        self.start(who, start).await
    }

    /// Starts an answer: `send_message`, `edit_message` and `regenerate` all end here.
    pub(super) async fn start(&self, who: &Identity, start: Start) -> Result<SendOutcome, Error> {
        // Held until the answer task is spawned or this send gives up, so that a shutdown that
        // starts meanwhile waits for this answer instead of returning without it. The token and
        // `is_closed` use the tracker's one atomic, so there is no gap between the two.
        let _in_flight = self.shared.tasks.token();
        if self.shared.tasks.is_closed() {
            return Err(Error::ShuttingDown);
        }
        let info = self.authorize(who, &start.conversation).await?;
        let assistant = match self.answering(&info, &start)? {
            Answering::By(assistant) => assistant,
            Answering::No => return self.post(who, start).await,
        };
        // Two reads of the store at once: the members (for a group's authors) and the budget.
        let (setup, budget) =
            tokio::join!(self.answer_setup(&info, assistant), self.allowance(who));
        let (mut setup, budget) = (setup?, budget?);
        setup.client_tools = start.client_tools.clone();
        let mut reservation = match self.claim(who, &start).await? {
            Claim::Answer(reservation) => reservation,
            Claim::Repeat(first) => return Ok(first),
            Claim::Queue => return self.enqueue(who, start).await,
        };
        reservation.outcome.assistant = setup.assistant.as_ref().map(|a| a.name.clone());
        self.take_turn(&start).await?;
        let (request, answered, prompt, question) = self
            .prepare_request(who, &mut reservation, start.question, &setup)
            .await?;
        if let Some(question) = &question {
            // Before the answer's `stream_start`, on the same path: every member sees the
            // question first, on every node.
            self.tell_added(&start.conversation, question).await;
        }
        let at_leaf = question.is_some();
        let job = reservation.job(
            who,
            (answered, prompt, at_leaf),
            &request,
            start.streamed,
            budget,
            setup,
        );
        if job.streamed {
            self.open_log(&job, question).await;
        }
        let outcome = reservation.outcome.clone();
        reservation.commit();
        self.shared
            .tasks
            .spawn(answer::run(self.clone(), job, request));
        Ok(outcome)
    }

    /// The conversation for a new answer: reserved on this node and leased in the store. While
    /// an answer runs, what `on_busy` says: `busy`, [`Claim::Queue`], or the running answer
    /// interrupted (and the claim tried again, a few times at most).
    async fn claim(&self, who: &Identity, start: &Start) -> Result<Claim<'_>, Error> {
        let mut interrupted = 0;
        loop {
            let cmid = start.client_message_id.as_deref();
            match self.reserve(who, &start.conversation, cmid, start.queued.as_ref()) {
                Ok(Reserved::Repeat(first)) => return Ok(Claim::Repeat(first)),
                Ok(Reserved::New(mut reservation)) => {
                    if !self.behind_queued(start).await? {
                        match reservation.claim_lease().await {
                            Ok(()) => return Ok(Claim::Answer(reservation)),
                            Err(Error::Busy) => {}
                            Err(e) => return Err(e),
                        }
                    }
                }
                Err(Error::Busy) => {}
                Err(e) => return Err(e),
            }
            // An answer runs in the conversation (or sends wait for their turn).
            match start.on_busy {
                OnBusy::Enqueue => return Ok(Claim::Queue),
                OnBusy::Interrupt if interrupted < 3 => {
                    interrupted += 1;
                    self.interrupt(who, &start.conversation).await?;
                }
                _ => return Err(Error::Busy),
            }
        }
    }

    /// Whether a send that would queue must wait behind sends queued already: they go first.
    async fn behind_queued(&self, start: &Start) -> Result<bool, Error> {
        if start.on_busy != OnBusy::Enqueue {
            return Ok(false);
        }
        let queue = self.shared.stores.send_queue();
        Ok(!queue.queued_sends(&start.conversation).await?.is_empty())
    }

    /// A queued send whose turn has come leaves its queue: `not_found` when it was
    /// cancelled, or started by another node, meanwhile.
    async fn take_turn(&self, start: &Start) -> Result<(), Error> {
        let Some(queued) = &start.queued else {
            return Ok(());
        };
        let queue = self.shared.stores.send_queue();
        if queue
            .remove_queued(&start.conversation, &queued.stream_id)
            .await?
        {
            Ok(())
        } else {
            Err(Error::NotFound("the queued send is no longer queued"))
        }
    }

    /// The first outcome of a send of `who` with this `client_message_id`, if it is still
    /// remembered, marked `duplicate`: a front end that limits how many answers a user may
    /// start can answer a repeat without counting it.
    pub fn sent_before(
        &self,
        who: &Identity,
        conversation: &ConversationId,
        client_message_id: &str,
    ) -> Option<SendOutcome> {
        let key = (
            conversation.clone(),
            who.user_id.clone(),
            client_message_id.to_owned(),
        );
        self.state().sent.repeat(&key)
    }

    /// Checks for a repeat and reserves the conversation in one critical section, so that two
    /// concurrent sends on this node can neither both start nor both be told "duplicate".
    fn reserve(
        &self,
        who: &Identity,
        conversation: &ConversationId,
        client_message_id: Option<&str>,
        queued: Option<&QueuedSend>,
    ) -> Result<Reserved<'_>, Error> {
        let conversation = conversation.clone();
        let key =
            client_message_id.map(|id| (conversation.clone(), who.user_id.clone(), id.to_owned()));
        let outcome = match queued {
            Some(queued) => SendOutcome {
                message_id: queued.message_id.clone(),
                answer_message_id: queued.answer_message_id.clone(),
                stream_id: queued.stream_id.clone(),
                duplicate: false,
                queued: None,
                answered: true,
                assistant: None,
            },
            None => new_outcome(),
        };
        let cancel = CancellationToken::new();
        let seq = Arc::new(AtomicU64::new(0));
        let approvals = Arc::new(answer::Approvals::default());
        let mut state = self.state();
        if let Some(first) = key.as_ref().and_then(|key| state.sent.repeat(key)) {
            return Ok(Reserved::Repeat(first));
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
                approvals: approvals.clone(),
            },
        );
        if let Some(key) = &key {
            let capacity = self.shared.config.idempotency_capacity;
            state.sent.insert(key.clone(), outcome.clone(), capacity);
        }
        drop(state);
        Ok(Reserved::New(Reservation {
            engine: self,
            conversation,
            key,
            outcome,
            cancel,
            seq,
            approvals,
            leased: false,
            committed: false,
        }))
    }

    /// Stores the user's message, if the question is a new one, and builds the model's
    /// request from the active branch up to it. Returns the request and the user message the
    /// answer answers (its parent). Runs under the conversation's lease, so that no other
    /// answer changes the active branch meanwhile.
    async fn prepare_request(
        &self,
        who: &Identity,
        reservation: &mut Reservation<'_>,
        question: Question,
        setup: &AnswerSetup,
    ) -> Result<(LlmRequest, MessageId, HistoryQuery, Option<ChatMessage>), Error> {
        let store = self.shared.stores.history();
        let config = &self.shared.config;
        let conversation = &reservation.conversation;
        let (text, parent, attachments) = match question {
            // After the active branch's leaf as the store finds it when it stores it.
            Question::New { text, attachments } => (text, Place::Leaf, attachments),
            Question::Edit {
                text,
                parent,
                attachments,
            } => (text, Place::After(parent), attachments),
            Question::Again {
                user_message,
                replaces,
            } => {
                reservation.outcome.message_id = user_message.clone();
                let before = match replaces {
                    // Through the answer replaced, so that the model sees the branch it saw.
                    Some(replaced) => {
                        store.switch_branch(conversation, &replaced).await?;
                        Some(replaced)
                    }
                    None if store.active_leaf(conversation).await?.as_ref()
                        == Some(&user_message) =>
                    {
                        None
                    }
                    None => {
                        return Err(Error::Conflict(
                            "the conversation changed meanwhile; regenerate again",
                        ));
                    }
                };
                let query = HistoryQuery {
                    before,
                    limit: config.history_window.max(1),
                };
                let messages = self.prompt_history(conversation, query.clone()).await?;
                let request = self.llm_request(&who.user_id, conversation, setup, messages);
                return Ok((request, user_message, query, None));
            }
        };
        let id = reservation.outcome.message_id.clone();
        let user_message = user_message(id, who, text, attachments);
        let user_message = self
            .store_message(conversation, user_message, parent)
            .await?;
        let answered = user_message.message_id.clone();
        let query = HistoryQuery::newest(config.history_window.max(1));
        let messages = self.prompt_history(conversation, query.clone()).await?;
        let request = self.llm_request(&who.user_id, conversation, setup, messages);
        Ok((request, answered, query, Some(user_message)))
    }

    /// Whether `start` is answered, and by which assistant: a queued send was answered when
    /// it was queued, a regeneration by the assistant it replaces; a send or an edit as the
    /// conversation's policy, its mentions and `answer` say.
    fn answering(&self, info: &ConversationInfo, start: &Start) -> Result<Answering, Error> {
        let assistants = &self.shared.config.assistants;
        let by_name = |name: Option<&str>| {
            name.and_then(|n| assistants.iter().find(|a| a.name == n))
                .or(assistants.first())
                .cloned()
        };
        match &start.question {
            Question::Again { .. } if info.answer_policy == crate::AnswerPolicy::Never => {
                Err(Error::BadRequest(
                    "this conversation's answer_policy is \"never\": nothing is regenerated".into(),
                ))
            }
            Question::Again { .. } => Ok(Answering::By(by_name(start.assistant.as_deref()))),
            // Answered as it would be where every message is.
            Question::New { text, .. } | Question::Edit { text, .. } if start.queued.is_some() => {
                who_answers(assistants, crate::AnswerPolicy::Always, Some(true), text)
            }
            Question::New { text, .. } | Question::Edit { text, .. } => {
                who_answers(assistants, info.answer_policy, start.answer, text)
            }
        }
    }

    /// What an answer in the conversation `info`, by `assistant`, takes from its settings
    /// (and its members, when there is more than one).
    pub(super) async fn answer_setup(
        &self,
        info: &ConversationInfo,
        assistant: Option<crate::Assistant>,
    ) -> Result<AnswerSetup, Error> {
        let config = &self.shared.config;
        let members = self
            .shared
            .stores
            .conversations()
            .members(&info.conversation_id)
            .await?;
        // An assistant's model is the app's own choice, used as it is; a conversation's
        // only while the app still offers it.
        let model = match assistant.as_ref().and_then(|a| a.model.clone()) {
            Some(model) => Some(model),
            None => config.model_for(info.model.as_deref()).map(str::to_owned),
        };
        Ok(AnswerSetup {
            model,
            // A prompt set while the app allowed it is dropped once the app no longer does.
            system_prompt: info
                .system_prompt
                .clone()
                .filter(|_| config.max_system_prompt_chars > 0),
            untitled: info.title.is_none(),
            assistant,
            group: if members.len() > 1 {
                members
            } else {
                Vec::new()
            },
            client_tools: crate::ClientTools::default(),
        })
    }

    /// The model's request: the app's system prompt, if any, then the conversation's, then
    /// `history`.
    pub(super) fn llm_request(
        &self,
        user: &crate::UserId,
        conversation: &ConversationId,
        setup: &AnswerSetup,
        history: Vec<PromptMessage>,
    ) -> LlmRequest {
        let assistant = setup.assistant.as_ref();
        let group = (!setup.group.is_empty()).then(|| group_prompt(setup));
        let prompts = [
            self.shared.config.system_prompt.as_ref(),
            setup.system_prompt.as_ref(),
            assistant.and_then(|a| a.system_prompt.as_ref()),
            group.as_ref(),
        ];
        let mut messages = Vec::with_capacity(history.len() + 4);
        for prompt in prompts.into_iter().flatten() {
            messages.push(PromptMessage::text(MessageRole::System, prompt.clone()));
        }
        let alone = setup.group.is_empty();
        messages.extend(history.into_iter().map(|mut m| {
            // Authors only where there are several people to tell apart: a conversation of
            // one sends what it always sent.
            if alone || m.role != MessageRole::User {
                m.author = None;
            }
            m
        }));
        let tools = self.shared.tools.specs();
        let mut tools: Vec<crate::ToolSpec> = match assistant.and_then(|a| a.tools.as_ref()) {
            Some(allowed) => tools
                .iter()
                .filter(|t| allowed.contains(&t.name))
                .cloned()
                .collect(),
            None => tools.to_vec(),
        };
        // The client's own tools, whoever answers: the sender offered them for this answer.
        tools.extend_from_slice(setup.client_tools.specs());
        LlmRequest {
            conversation_id: conversation.clone(),
            user_id: user.clone(),
            messages,
            tools,
            model: setup.model.clone(),
        }
    }

    /// Moves the conversation to the top of its members' lists with `last` as its preview.
    /// Not fatal: a list a little out of date is better than a lost message.
    pub(super) async fn touch(&self, conversation: &ConversationId, last: &LastMessage) {
        if let Err(e) = self
            .shared
            .stores
            .conversations()
            .touch(conversation, last)
            .await
        {
            tracing::warn!(error = %e, %conversation, "could not update the conversation's list entry");
        }
    }

    /// Opens the answer's log before the answer starts, so that a follower that reads the log
    /// as soon as `send` returns (the HTTP fallback) finds it. A log that cannot be opened is
    /// not fatal: the answer goes on, and a resume is refused.
    async fn open_log(&self, job: &answer::AnswerJob, question: Option<ChatMessage>) {
        let meta = StreamMeta {
            conversation_id: job.conversation_id.clone(),
            stream_id: job.stream_id.clone(),
            message_id: job.message_id.clone(),
            question,
        };
        if let Err(e) = self.shared.log.open(&meta).await {
            tracing::warn!(error = %e, stream_id = %job.stream_id, "could not open the stream log");
        }
    }
}

/// What the model is told of a group conversation: who is in it, how their messages are
/// marked, and which assistant it is.
fn group_prompt(setup: &AnswerSetup) -> String {
    let members: Vec<&str> = setup.group.iter().map(|m| m.as_str()).collect();
    let mut prompt = format!(
        "This is a group conversation between {}. Each user message is marked with its \
         author's name; answer the person who asked.",
        members.join(", ")
    );
    if let Some(assistant) = &setup.assistant {
        prompt.push_str(&format!(" You are the assistant \"{}\".", assistant.name));
    }
    prompt
}

/// A user message of `who`, written now (its parent is set where it is stored).
pub(super) fn user_message(
    id: MessageId,
    who: &Identity,
    text: String,
    attachments: Vec<Attachment>,
) -> ChatMessage {
    ChatMessage {
        message_id: id,
        role: MessageRole::User,
        content: text,
        user_id: Some(who.user_id.clone()),
        created_at: crate::now_millis(),
        parts: Vec::new(),
        parent_id: None,
        siblings: Vec::new(),
        attachments,
        assistant: None,
    }
}
