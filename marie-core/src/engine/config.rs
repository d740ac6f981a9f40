//! [`EngineConfig`]: the engine's limits and switches.

use std::time::Duration;

use crate::{Assistant, OnBusy, TitlePolicy};

/// Limits and switches of a [`ChatEngine`](crate::ChatEngine). `Default` fits a public chat.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct EngineConfig {
    /// The longest user message, in bytes (`payload_too_large` above it).
    pub max_message_bytes: usize,
    /// How many of the newest history messages are sent to the model with each request.
    pub history_window: usize,
    /// An optional system prompt sent first with every request.
    pub system_prompt: Option<String>,
    /// `get_history` returns at most this many messages per call.
    pub max_history_page: usize,
    /// `get_history` page size when the client names none.
    pub default_history_page: usize,
    /// Joining a conversation that does not exist creates it, with the caller as creator.
    pub create_on_join: bool,
    /// How many `client_message_id`s are remembered for idempotent `send_message`.
    pub idempotency_capacity: usize,
    /// How long a running answer's lease on its conversation lasts without renewal (it is
    /// renewed every third of that while the answer runs). A node that dies leaves its
    /// conversations busy for at most this long.
    pub answer_lease: Duration,
    /// The most model steps of one answer: a step is one request to the model; when it calls
    /// tools, their results go back to the model in the next step. An answer that still
    /// calls tools in its last step ends with `finish_reason:"max_steps"` (its last calls are
    /// not run, and get an error result saying so).
    pub max_steps: usize,
    /// How long one tool call may run before it is dropped and the model told it timed out.
    pub tool_timeout: Duration,
    /// How long a tool call waits for a member's approval before it counts as denied
    /// (`reason:"expired"`).
    pub approval_timeout: Duration,
    /// What a `send_message` that names no `on_busy` does while an answer runs: `Reject`
    /// (`busy`, the default), `Enqueue` or `Interrupt`.
    pub on_busy: OnBusy,
    /// The most sends that may wait in one conversation's queue; one more is `busy`.
    pub max_queue: usize,
    /// How many times a model step whose stream fails after it began (a dropped connection,
    /// a cut, a malformed event, an overloaded model) is asked again, after
    /// [`retry_backoff`](Self::retry_backoff), doubling, before the answer fails. Clients are
    /// sent `stream_reset` and drop the failed attempt's events; 0 turns it off for clients
    /// that cannot.
    pub mid_stream_retries: u32,
    /// The wait before the first retry of a failed step; each next retry waits twice as long.
    pub retry_backoff: Duration,
    /// The largest file a user may upload, in bytes (`payload_too_large` above it).
    pub max_file_bytes: usize,
    /// How many bytes one user's files may take in all (`quota_exceeded` above it); `None`:
    /// no quota.
    pub file_quota_bytes: Option<u64>,
    /// The most files one message may carry.
    pub max_attachments: usize,
    /// The models the app offers (`update_conversation.model` must be one of them); the
    /// first is the default, given to the provider for a conversation that chose none.
    /// Empty (the default): conversations cannot choose, and the provider uses its own.
    pub models: Vec<String>,
    /// The longest title, in characters (200).
    pub max_title_chars: usize,
    /// The longest system prompt a conversation may have, in characters; 0 (the default):
    /// conversations cannot set one. It is given to the model after the app's own
    /// ([`system_prompt`](Self::system_prompt)).
    pub max_system_prompt_chars: usize,
    /// How a conversation is named after its first answer (the first words of its first
    /// message, by default).
    pub titles: TitlePolicy,
    /// Whether a deleted conversation's files stay in the file store (`false`, the default:
    /// they are deleted with it).
    pub keep_files_on_delete: bool,
    /// The app's named assistants (`docs/protocol.md` section 10): `@name` in a message picks
    /// which one answers it; the first answers a message that names none. Empty (the
    /// default): answers are not named.
    pub assistants: Vec<Assistant>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: 32 * 1024,
            history_window: 40,
            system_prompt: None,
            max_history_page: 200,
            default_history_page: 50,
            create_on_join: true,
            idempotency_capacity: 10_000,
            answer_lease: Duration::from_secs(15),
            max_steps: 8,
            tool_timeout: Duration::from_secs(30),
            approval_timeout: Duration::from_secs(10 * 60),
            on_busy: OnBusy::Reject,
            max_queue: 5,
            mid_stream_retries: 2,
            retry_backoff: Duration::from_millis(200),
            max_file_bytes: 10 * 1024 * 1024,
            file_quota_bytes: Some(100 * 1024 * 1024),
            max_attachments: 8,
            models: Vec::new(),
            max_title_chars: 200,
            max_system_prompt_chars: 0,
            titles: TitlePolicy::default(),
            keep_files_on_delete: false,
            assistants: Vec::new(),
        }
    }
}

impl EngineConfig {
    /// Sets [`on_busy`](Self::on_busy).
    pub fn on_busy(mut self, on_busy: OnBusy) -> Self {
        self.on_busy = on_busy;
        self
    }

    /// Sets [`mid_stream_retries`](Self::mid_stream_retries).
    pub fn mid_stream_retries(mut self, retries: u32) -> Self {
        self.mid_stream_retries = retries;
        self
    }

    /// Sets [`retry_backoff`](Self::retry_backoff).
    pub fn retry_backoff(mut self, backoff: Duration) -> Self {
        self.retry_backoff = backoff;
        self
    }

    /// Sets [`max_file_bytes`](Self::max_file_bytes).
    pub fn max_file_bytes(mut self, bytes: usize) -> Self {
        self.max_file_bytes = bytes;
        self
    }

    /// Sets [`file_quota_bytes`](Self::file_quota_bytes).
    pub fn file_quota_bytes(mut self, quota: Option<u64>) -> Self {
        self.file_quota_bytes = quota;
        self
    }

    /// Sets [`max_attachments`](Self::max_attachments).
    pub fn max_attachments(mut self, files: usize) -> Self {
        self.max_attachments = files;
        self
    }

    /// Sets [`max_queue`](Self::max_queue).
    pub fn max_queue(mut self, sends: usize) -> Self {
        self.max_queue = sends;
        self
    }

    /// Sets [`max_message_bytes`](Self::max_message_bytes).
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes;
        self
    }

    /// Sets [`history_window`](Self::history_window).
    pub fn history_window(mut self, messages: usize) -> Self {
        self.history_window = messages;
        self
    }

    /// Sets [`system_prompt`](Self::system_prompt).
    pub fn system_prompt(mut self, prompt: impl Into<String>) -> Self {
        self.system_prompt = Some(prompt.into());
        self
    }

    /// Sets [`answer_lease`](Self::answer_lease) (at least 100 ms).
    pub fn answer_lease(mut self, lease: Duration) -> Self {
        self.answer_lease = lease.max(Duration::from_millis(100));
        self
    }

    /// Sets [`max_steps`](Self::max_steps) (at least 1).
    pub fn max_steps(mut self, steps: usize) -> Self {
        self.max_steps = steps.max(1);
        self
    }

    /// Sets [`tool_timeout`](Self::tool_timeout).
    pub fn tool_timeout(mut self, timeout: Duration) -> Self {
        self.tool_timeout = timeout;
        self
    }

    /// Sets [`approval_timeout`](Self::approval_timeout).
    pub fn approval_timeout(mut self, timeout: Duration) -> Self {
        self.approval_timeout = timeout;
        self
    }

    /// Sets [`models`](Self::models): the first is the default.
    pub fn models<I, S>(mut self, models: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.models = models.into_iter().map(Into::into).collect();
        self
    }

    /// Sets [`max_title_chars`](Self::max_title_chars) (at least 1).
    pub fn max_title_chars(mut self, chars: usize) -> Self {
        self.max_title_chars = chars.max(1);
        self
    }

    /// Sets [`max_system_prompt_chars`](Self::max_system_prompt_chars) (0: not allowed).
    pub fn max_system_prompt_chars(mut self, chars: usize) -> Self {
        self.max_system_prompt_chars = chars;
        self
    }

    /// Sets [`titles`](Self::titles).
    pub fn titles(mut self, policy: TitlePolicy) -> Self {
        self.titles = policy;
        self
    }

    /// Sets [`keep_files_on_delete`](Self::keep_files_on_delete).
    pub fn keep_files_on_delete(mut self, keep: bool) -> Self {
        self.keep_files_on_delete = keep;
        self
    }

    /// The model an answer in a conversation that chose `chosen` uses: the chosen one while
    /// the app still offers it, else the app's default (`None`: the provider's own).
    pub fn model_for<'a>(&'a self, chosen: Option<&'a str>) -> Option<&'a str> {
        match chosen {
            Some(model) if self.models.iter().any(|m| m == model) => Some(model),
            _ => self.models.first().map(String::as_str),
        }
    }

    /// Sets [`assistants`](Self::assistants): the first answers a message that mentions none.
    ///
    /// # Panics
    ///
    /// When a name is not one a mention can match (letters, digits, `_`, `-`; at most 64) or
    /// two assistants share one (ignoring case): a mistake in the app, found at start.
    pub fn assistants(mut self, assistants: impl IntoIterator<Item = Assistant>) -> Self {
        let assistants: Vec<Assistant> = assistants.into_iter().collect();
        for (i, a) in assistants.iter().enumerate() {
            assert!(
                Assistant::valid_name(&a.name),
                "assistant name {:?}: use letters, digits, `_` and `-` (at most 64)",
                a.name
            );
            assert!(
                !assistants[..i]
                    .iter()
                    .any(|b| b.name.eq_ignore_ascii_case(&a.name)),
                "two assistants are named {:?}",
                a.name
            );
        }
        self.assistants = assistants;
        self
    }

    /// Sets [`create_on_join`](Self::create_on_join).
    pub fn create_on_join(mut self, create: bool) -> Self {
        self.create_on_join = create;
        self
    }
}
