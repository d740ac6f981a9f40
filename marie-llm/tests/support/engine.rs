//! The engine with an in-memory store and a recording sink: what a client of a
//! conversation receives, without the transport.

use std::sync::Arc;

use marie_adapters::{MemoryFileStore, MemoryStore};
use marie_core::{
    Bytes, ChatEngine, ConversationId, EndStatus, EngineConfig, ErrorCode, FileId, Identity,
    LlmProvider, RecordingSink, SendRequest, StreamChunk, StreamEnd, StreamEvent, StreamFailed,
    StreamId, StreamReasoning, Tool, Upload, UserId,
};

use super::fake::WAIT;

pub struct Chat {
    pub engine: ChatEngine,
    pub sink: Arc<RecordingSink>,
    pub user: Identity,
    pub conversation: ConversationId,
}

/// One answer as the room saw it.
#[derive(Debug)]
pub struct Answer {
    pub stream_id: StreamId,
    pub chunks: Vec<StreamChunk>,
    /// The `stream_reasoning` events, in order.
    pub reasoning: Vec<StreamReasoning>,
    /// Every event of the answer, in order.
    pub events: Vec<StreamEvent>,
    pub terminal: StreamEvent,
}

impl Chat {
    pub async fn new(provider: impl LlmProvider, config: EngineConfig) -> Self {
        Self::with_tools(provider, config, Vec::new()).await
    }

    /// A chat whose engine offers `tools` to the model.
    pub async fn with_tools(
        provider: impl LlmProvider,
        config: EngineConfig,
        tools: Vec<Arc<dyn Tool>>,
    ) -> Self {
        let sink = Arc::new(RecordingSink::new());
        let mut builder = ChatEngine::builder(
            Arc::new(MemoryStore::new()),
            Arc::new(provider),
            sink.clone(),
        )
        .config(config)
        .files(Arc::new(MemoryFileStore::new()));
        for tool in tools {
            builder = builder.tool(tool);
        }
        let engine = builder.build();
        let user = Identity::new(UserId::parse("alice").expect("user id"));
        let conversation = ConversationId::parse("talk").expect("conversation id");
        engine.join(&user, &conversation).await.expect("join");
        Self {
            engine,
            sink,
            user,
            conversation,
        }
    }

    /// Sends `message` and returns the answer's stream id at once.
    pub async fn send(&self, message: &str) -> StreamId {
        self.send_with_files(message, Vec::new()).await
    }

    /// Sends `message` with the uploaded `files` attached.
    pub async fn send_with_files(&self, message: &str, files: Vec<FileId>) -> StreamId {
        self.engine
            .send(
                &self.user,
                SendRequest {
                    conversation_id: self.conversation.clone(),
                    message: message.into(),
                    stream: true,
                    client_message_id: None,
                    on_busy: None,
                    attachments: files,
                },
            )
            .await
            .expect("send")
            .stream_id
    }

    /// Uploads a file to the conversation, as `POST /api/chat/files` does.
    pub async fn upload(&self, name: &str, data: &'static [u8]) -> FileId {
        self.engine
            .upload(
                &self.user,
                Upload {
                    conversation_id: self.conversation.clone(),
                    name: name.into(),
                    content_type: None,
                    data: Bytes::from_static(data),
                },
            )
            .await
            .expect("upload")
            .file_id
    }

    /// Waits for the first chunk of `stream`.
    pub async fn first_chunk(&self, stream: &StreamId) -> StreamChunk {
        let event = tokio::time::timeout(
            WAIT,
            self.sink
                .wait_for(|e| matches!(e, StreamEvent::Chunk(c) if c.stream_id == *stream)),
        )
        .await
        .expect("a first chunk in time");
        match event {
            StreamEvent::Chunk(c) => c,
            _ => unreachable!(),
        }
    }

    /// Waits for the end of `stream` and returns everything the room got of it, checking
    /// the protocol's rules on the way: one `stream_start` first, `seq` 1, 2, 3, ... with
    /// no gaps, no empty chunk, `tokens_used` increasing, one terminal event last.
    pub async fn finish(&self, stream: &StreamId) -> Answer {
        tokio::time::timeout(
            WAIT,
            self.sink.wait_for(|e| match e {
                StreamEvent::End(end) => end.stream_id == *stream,
                StreamEvent::Error(err) => err.stream_id == *stream,
                _ => false,
            }),
        )
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the answer did not end within {WAIT:?}; events: {:#?}",
                self.sink.events()
            )
        });
        let events: Vec<StreamEvent> = self
            .sink
            .events()
            .into_iter()
            .filter(|e| e.stream_id() == stream)
            .collect();
        assert!(
            matches!(events.first(), Some(StreamEvent::Start(_))),
            "{events:#?}"
        );
        let terminal = events.last().cloned().expect("a terminal event");
        assert!(terminal.is_terminal(), "{events:#?}");
        assert_eq!(
            events.iter().filter(|e| e.is_terminal()).count(),
            1,
            "exactly one terminal event: {events:#?}"
        );
        let chunks: Vec<StreamChunk> = events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::Chunk(c) => Some(c.clone()),
                _ => None,
            })
            .collect();
        let seqs: Vec<u64> = events.iter().filter_map(StreamEvent::seq).collect();
        assert_eq!(
            seqs,
            (1..=seqs.len() as u64).collect::<Vec<_>>(),
            "seq without gaps, chunks and reasoning alike: {events:#?}"
        );
        let reasoning: Vec<StreamReasoning> = events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::Reasoning(r) => Some(r.clone()),
                _ => None,
            })
            .collect();
        for (i, c) in chunks.iter().enumerate() {
            assert!(!c.content.is_empty());
            assert!(!c.done);
            assert_eq!(c.tokens_used, i as u64 + 1, "one token per delta");
        }
        Answer {
            stream_id: stream.clone(),
            chunks,
            reasoning,
            events,
            terminal,
        }
    }

    /// Sends `message` and waits for the whole answer.
    pub async fn ask(&self, message: &str) -> Answer {
        let stream = self.send(message).await;
        self.finish(&stream).await
    }
}

impl Answer {
    pub fn text(&self) -> String {
        self.chunks.iter().map(|c| c.content.as_str()).collect()
    }

    /// The `stream_end`, checked to be `complete` with `full_content` == the chunks.
    pub fn complete(&self) -> &StreamEnd {
        let StreamEvent::End(end) = &self.terminal else {
            panic!("expected stream_end, got {:#?}", self.terminal)
        };
        assert_eq!(end.status, EndStatus::Complete, "{end:#?}");
        assert_eq!(end.full_content, self.text());
        end
    }

    /// The `stream_error`, checked to be `provider_unavailable` with a safe message and
    /// `after_seq` naming the last numbered event sent.
    pub fn failed(&self) -> &StreamFailed {
        let StreamEvent::Error(err) = &self.terminal else {
            panic!("expected stream_error, got {:#?}", self.terminal)
        };
        assert_eq!(err.code, ErrorCode::ProviderUnavailable);
        assert_eq!(err.error, "the language model is unavailable");
        let last = self.events.iter().filter_map(StreamEvent::seq).max();
        assert_eq!(err.after_seq, last.unwrap_or(0));
        err
    }
}
