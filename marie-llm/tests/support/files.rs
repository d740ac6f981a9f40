//! Files on a user message, as the engine hands them to a provider: a PNG, a PDF, a text
//! file, and one gone from the store (`data: None`); and a request that carries them.

use futures_util::StreamExt;
use marie_core::{
    Attachment, Bytes, ConversationId, FileId, LlmEvent, LlmProvider, LlmRequest, MessageRole,
    PromptMessage, UserId,
};

use super::fake::{FakeServer, Recorded};

/// A 1×1 PNG's signature and header: what the engine takes as `image/png`.
pub const PNG: &[u8] =
    b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";
/// [`PNG`] in standard base64, as the APIs take it.
pub const PNG_BASE64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJ";
pub const PDF: &[u8] = b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n";
/// [`PDF`] in standard base64.
pub const PDF_BASE64: &str = "JVBERi0xLjQKMSAwIG9iago8PD4+CmVuZG9iago=";
pub const NOTES: &[u8] = b"buy milk\neggs";

fn file(name: &str, content_type: &str, size: u64, data: Option<&'static [u8]>) -> Attachment {
    Attachment {
        file_id: FileId::random(),
        name: name.into(),
        content_type: content_type.into(),
        size,
        data: data.map(Bytes::from_static),
    }
}

/// `cat.png`, `report.pdf`, `notes.txt` with their bytes, and `old.png` (2048 bytes on
/// record) gone.
pub fn attachments() -> Vec<Attachment> {
    vec![
        file("cat.png", "image/png", PNG.len() as u64, Some(PNG)),
        file("report.pdf", "application/pdf", PDF.len() as u64, Some(PDF)),
        file("notes.txt", "text/plain", NOTES.len() as u64, Some(NOTES)),
        file("old.png", "image/png", 2048, None),
    ]
}

/// A system prompt, a first exchange without files, then "What are these?" with
/// [`attachments`].
pub fn request_with_files() -> LlmRequest {
    LlmRequest {
        conversation_id: ConversationId::parse("c").unwrap(),
        user_id: UserId::parse("u").unwrap(),
        messages: vec![
            PromptMessage::text(MessageRole::System, "Be brief."),
            PromptMessage::text(MessageRole::User, "Hi"),
            PromptMessage::text(MessageRole::Assistant, "Hello!"),
            PromptMessage {
                attachments: attachments(),
                ..PromptMessage::text(MessageRole::User, "What are these?")
            },
        ],
        tools: Vec::new(),
        model: None,
    }
}

/// Asks `provider` directly with [`request_with_files`], checks the answer ("Two files.", as
/// the server is to say) and that `server` got one request, and returns that request.
pub async fn ask_with_files(provider: &impl LlmProvider, server: &FakeServer) -> Recorded {
    let said = answer(provider, request_with_files()).await;
    assert_eq!(said, "Two files.");
    let mut requests = server.requests();
    assert_eq!(requests.len(), 1);
    requests.remove(0)
}

/// Asks `provider` directly (no engine) and reads the answer to its end: the text, or the
/// first error.
pub async fn answer(provider: &impl LlmProvider, request: LlmRequest) -> String {
    let mut stream = provider.stream(request).await.unwrap();
    let mut text = String::new();
    while let Some(event) = stream.next().await {
        match event.unwrap() {
            LlmEvent::Delta(delta) => text.push_str(&delta),
            LlmEvent::Done { .. } => return text,
            _ => {}
        }
    }
    panic!("the answer ended without `Done`: {text:?}")
}
