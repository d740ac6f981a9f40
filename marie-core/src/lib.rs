//! # marie-core
//!
//! The heart of [MARIE](https://github.com/marie-rs/marie): real-time AI chat for axum apps.
//! This crate knows nothing of sockets or HTTP. It holds
//!
//! * the backend traits — [`Authenticator`], the store traits (one per concern:
//!   [`Conversations`], [`History`], [`Sessions`], [`AnswerLeases`], [`Approvals`],
//!   [`SendQueue`], [`UsageLedger`]; [`RoomStore`] is their sum), [`LlmProvider`],
//!   [`StreamSink`], [`AccessPolicy`], [`ControlBus`], [`StreamLog`] and [`FileStore`] —
//!   which third-party backends implement, depending on this crate alone, and [`Tool`], the
//!   app's functions the model may call;
//! * the domain types ([`ConversationId`], [`ChatMessage`], [`Usage`], ...) and the one type of
//!   everything an answer sends to a conversation ([`StreamEvent`]), which every layer carries
//!   as it is, from the engine to the client;
//! * the errors, each client-facing one with a stable [`code`](Error::code);
//! * the [`ChatEngine`], which runs every client command and one answer task per answer.
//!
//! ## One trait style
//!
//! Every backend trait is an object-safe `#[async_trait]` trait with `Send + Sync + 'static`
//! bounds, so backends can be chosen at run time and held as `Arc<dyn Trait>`. Methods take
//! `&self` (backends share state internally, cheaply cloned) and return a `Result` with the
//! area's own error enum. Where a closure is enough, a `*_fn` adapter turns one into the
//! trait ([`authenticator_fn`]), as `tower::service_fn` does for services.
//!
//! ## Feature flags
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | — | | `marie-core` has no optional features; backends live in `marie-adapters` and `marie-llm` |
//!
//! ## Example: the engine with in-process backends
//!
//! ```
//! # use std::sync::Arc;
//! use marie_core::{ChatEngine, RecordingSink, Stores};
//! # async fn demo(store: Arc<dyn marie_core::RoomStore>, provider: Arc<dyn marie_core::LlmProvider>) {
//! let sink = Arc::new(RecordingSink::new());
//! let engine = ChatEngine::builder(Stores::shared(store), provider, sink.clone()).build();
//! # let _ = engine;
//! # }
//! ```

mod auth;
mod budget;
mod control;
mod engine;
mod error;
mod file;
mod identity;
mod ids;
mod log;
mod message;
mod notice;
mod policy;
mod provider;
mod sink;
mod store;
mod stream;
mod tool;

pub use auth::{Authenticator, AuthenticatorFn, authenticator_fn};
pub use budget::{
    Budget, BudgetFn, BudgetParseError, BudgetPeriod, BudgetPolicy, UsageReport, budget_fn,
};
/// The bytes of a file ([`StoredFile`], [`Attachment`]), re-exported from `bytes`.
pub use bytes::Bytes;
pub use control::{ControlBus, ControlHandler, ControlMessage, LocalControlBus};
pub use engine::{
    ActiveStream, Assistant, ChatEngine, ConversationDetails, ConversationExport, EngineBuilder,
    EngineConfig, Joined, Member, MemberRole, OnBusy, SendOutcome, SendRequest, TitlePolicy,
    Upload, Waited,
};
pub use error::{AuthError, Error, ErrorCode, ProviderError, SinkError, StoreError};
pub use file::{
    ACCEPTED_CONTENT_TYPES, Attachment, FileMeta, FileStore, PutOutcome, StoredFile,
    clean_file_name, sniff_content_type,
};
pub use identity::{ADMIN_ROLE, Credentials, Identity};
pub use ids::{
    ApprovalId, ConversationId, FileId, MAX_ID_LEN, MessageId, SessionId, StreamId, UserId,
};
pub use log::{LogRead, MemoryLogConfig, MemoryStreamLog, StreamLog, StreamMeta, check_resume};
pub use message::{ChatMessage, FinishReason, MessageRole, Usage, estimate_tokens, now_millis};
pub use notice::{ConversationDeleted, ConversationUpdated, Notice, NoticePayload, Removed};
pub use policy::{AccessPolicy, DefaultAccessPolicy};
pub use provider::{
    AssistantTurn, LlmEvent, LlmProvider, LlmRequest, LlmStream, PromptMessage, ToolCall,
    ToolCallRef, ToolResultRef, ToolSpec, tool_result_text,
};
pub use sink::{RecordingSink, StreamSink, emit_each};
pub use store::{
    APPROVAL_RETENTION, AnswerLease, AnswerLeases, AnswerPolicy, ApprovalDecision, ApprovalOutcome,
    ApprovalRecord, Approvals, ConversationChange, ConversationInfo, ConversationPage,
    Conversations, History, HistoryQuery, LastMessage, ListCursor, ListQuery, ListedConversation,
    QueuedSend, RoomStore, SendQueue, SessionRecord, Sessions, Stores, UsageLedger, UsageWindow,
};
pub use stream::{
    AnswerFailed, EndStatus, MessageAdded, MessagePart, MessageResponse, Payload, PendingToolCall,
    SendQueued, StartStatus, StreamChunk, StreamEnd, StreamEvent, StreamFailed, StreamReasoning,
    StreamReset, StreamStart, ToolApproval, ToolApprovalRequest, ToolCallDelta, ToolCallReady,
    ToolCallStart, ToolResult,
};
pub use tool::{
    ClientTools, MAX_CLIENT_TOOLS, Tool, ToolContext, ToolError, ToolFn, Toolbox, ToolboxError,
    tool_fn,
};
