//! Files users upload and attach to their messages: the [`FileStore`] that keeps them, what a
//! file is ([`FileMeta`]), what a message keeps of one ([`Attachment`]), and which bytes are
//! taken ([`sniff_content_type`]).
//!
//! Files travel over HTTP (`POST /api/chat/files`), never over the Socket.IO connection: a
//! message names its files by id (`send_message.attachments`), the engine checks each one,
//! history keeps the references, and the bytes are read from the store only to build a
//! model's request.
//!
//! A file belongs to the user who uploaded it and to the conversation it was uploaded to:
//! only members of that conversation may read it, and only its owner may attach it, there.

use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::{ConversationId, Error, FileId, StoreError, UserId};

/// The content types MARIE takes, as [`sniff_content_type`] names them: images the vision
/// models read, PDF documents, and UTF-8 text.
pub const ACCEPTED_CONTENT_TYPES: &[&str] = &[
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "application/pdf",
    "text/plain",
];

/// A stored file's record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    /// The file.
    pub file_id: FileId,
    /// Who uploaded it: the only user who may attach it.
    pub user_id: UserId,
    /// The conversation it was uploaded to: whose members may read it, and where it may be
    /// attached.
    pub conversation_id: ConversationId,
    /// The name the client gave (its last path segment, at most 255 bytes).
    pub name: String,
    /// The type its bytes showed (one of [`ACCEPTED_CONTENT_TYPES`]).
    pub content_type: String,
    /// Its size in bytes.
    pub size: u64,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
}

impl FileMeta {
    /// What a message keeps of the file.
    pub fn attachment(&self) -> Attachment {
        Attachment {
            file_id: self.file_id.clone(),
            name: self.name.clone(),
            content_type: self.content_type.clone(),
            size: self.size,
            data: None,
        }
    }
}

/// A file and its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredFile {
    /// Its record.
    pub meta: FileMeta,
    /// Its bytes.
    pub data: Bytes,
}

/// A file attached to a user message: what history keeps (`messages[].attachments`) and, in a
/// model's request, its bytes too.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The file (`GET /api/chat/files/{file_id}` reads it).
    pub file_id: FileId,
    /// Its name.
    pub name: String,
    /// Its type.
    pub content_type: String,
    /// Its size in bytes.
    pub size: u64,
    /// The bytes, in a model's request only (the engine reads them from the [`FileStore`]);
    /// `None` in history, and when the file is gone.
    #[serde(skip)]
    pub data: Option<Bytes>,
}

impl Attachment {
    /// Whether the model is shown it as an image.
    pub fn is_image(&self) -> bool {
        self.content_type.starts_with("image/")
    }

    /// Whether it is a PDF document.
    pub fn is_pdf(&self) -> bool {
        self.content_type == "application/pdf"
    }

    /// The bytes in standard base64, as the model APIs take them.
    pub fn base64(&self) -> Option<String> {
        self.data
            .as_ref()
            .map(|data| base64::engine::general_purpose::STANDARD.encode(data))
    }

    /// A `data:` URL of the bytes (OpenAI's `image_url` and `file_data`).
    pub fn data_url(&self) -> Option<String> {
        self.base64()
            .map(|b64| format!("data:{};base64,{b64}", self.content_type))
    }

    /// The text a model is given in place of the file when it cannot take the file itself:
    /// a text file's content, fenced and named, or a note that names the file.
    pub fn as_text(&self) -> String {
        match &self.data {
            Some(data) if self.content_type == "text/plain" => format!(
                "<file name=\"{}\">\n{}\n</file>",
                self.name,
                String::from_utf8_lossy(data)
            ),
            Some(_) => format!(
                "[attached file \"{}\" ({}, {} bytes): this model cannot read it]",
                self.name, self.content_type, self.size
            ),
            None => format!(
                "[attached file \"{}\" ({}): no longer available]",
                self.name, self.content_type
            ),
        }
    }
}

/// What [`FileStore::put`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PutOutcome {
    /// The file is stored.
    Stored,
    /// Nothing was stored: the owner's files would exceed the quota. `used` is what they
    /// hold now.
    OverQuota {
        /// Bytes the owner's files take now.
        used: u64,
    },
}

/// Keeps uploaded files: in memory, in a directory, in the SQL database (`marie-adapters`).
///
/// A store checks the quota and stores the file in one step, so that two uploads at once
/// cannot both slip under it.
#[async_trait]
pub trait FileStore: Send + Sync + 'static {
    /// Stores `data` as `meta` describes it, unless the files of `meta.user_id` would then
    /// take more than `quota` bytes (`None`: no quota).
    async fn put(
        &self,
        meta: &FileMeta,
        data: Bytes,
        quota: Option<u64>,
    ) -> Result<PutOutcome, StoreError>;

    /// A file's record, if the store holds it.
    async fn meta(&self, file: &FileId) -> Result<Option<FileMeta>, StoreError>;

    /// A file's record and bytes, if the store holds it.
    async fn get(&self, file: &FileId) -> Result<Option<StoredFile>, StoreError>;

    /// Bytes the files of `user` take in all (what the quota counts).
    async fn used_bytes(&self, user: &UserId) -> Result<u64, StoreError>;

    /// Removes a file, whose bytes then no longer count for its owner: its record, or
    /// `None` when the store held no such file.
    async fn delete(&self, file: &FileId) -> Result<Option<FileMeta>, StoreError>;

    /// Removes every file uploaded to `conversation` (it is being deleted): their records.
    async fn delete_conversation_files(
        &self,
        conversation: &ConversationId,
    ) -> Result<Vec<FileMeta>, StoreError>;
}

/// A shared store is a store: `Arc<dyn FileStore>` can be passed where a store is taken.
#[async_trait]
impl<T: FileStore + ?Sized> FileStore for std::sync::Arc<T> {
    async fn put(
        &self,
        meta: &FileMeta,
        data: Bytes,
        quota: Option<u64>,
    ) -> Result<PutOutcome, StoreError> {
        (**self).put(meta, data, quota).await
    }

    async fn meta(&self, file: &FileId) -> Result<Option<FileMeta>, StoreError> {
        (**self).meta(file).await
    }

    async fn get(&self, file: &FileId) -> Result<Option<StoredFile>, StoreError> {
        (**self).get(file).await
    }

    async fn used_bytes(&self, user: &UserId) -> Result<u64, StoreError> {
        (**self).used_bytes(user).await
    }

    async fn delete(&self, file: &FileId) -> Result<Option<FileMeta>, StoreError> {
        (**self).delete(file).await
    }

    async fn delete_conversation_files(
        &self,
        conversation: &ConversationId,
    ) -> Result<Vec<FileMeta>, StoreError> {
        (**self).delete_conversation_files(conversation).await
    }
}

/// The content type of `data`, from its bytes: one of [`ACCEPTED_CONTENT_TYPES`], or
/// `unsupported_file_type`. A `declared` type (the upload's `Content-Type`) must agree with
/// the bytes, so that a PDF called `photo.png` is refused rather than shown to a vision model
/// as an image; `application/octet-stream` and no type at all leave it to the bytes.
///
/// Images and PDF are recognised by their signatures (the `infer` crate); text is what is
/// neither of those and is UTF-8 without NUL bytes.
pub fn sniff_content_type(declared: Option<&str>, data: &[u8]) -> Result<&'static str, Error> {
    let sniffed = match infer::get(data) {
        Some(kind) => ACCEPTED_CONTENT_TYPES
            .iter()
            .copied()
            .find(|accepted| *accepted == kind.mime_type())
            .ok_or_else(|| {
                Error::UnsupportedFileType(format!(
                    "files of type {} are not accepted (accepted: {})",
                    kind.mime_type(),
                    ACCEPTED_CONTENT_TYPES.join(", ")
                ))
            })?,
        None if !data.contains(&0) && std::str::from_utf8(data).is_ok() => "text/plain",
        None => {
            return Err(Error::UnsupportedFileType(format!(
                "the file's bytes are of no accepted type ({})",
                ACCEPTED_CONTENT_TYPES.join(", ")
            )));
        }
    };
    let declared = declared
        .map(|d| {
            d.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|d| !d.is_empty() && d != "application/octet-stream");
    if let Some(declared) = declared {
        // Any text subtype (`text/markdown`, `text/csv`) is text; images and PDF must match.
        let agrees = declared == sniffed
            || (sniffed == "text/plain" && declared.starts_with("text/"))
            || (sniffed == "image/jpeg" && declared == "image/jpg");
        if !agrees {
            return Err(Error::UnsupportedFileType(format!(
                "the file was sent as {declared} but its bytes are {sniffed}"
            )));
        }
    }
    Ok(sniffed)
}

/// A file name as stored: its last path segment, without control characters, at most 255
/// bytes; `"file"` when nothing is left.
pub fn clean_file_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let mut clean: String = last.chars().filter(|c| !c.is_control()).collect();
    if clean.len() > 255 {
        let mut end = 255;
        while !clean.is_char_boundary(end) {
            end -= 1;
        }
        clean.truncate(end);
    }
    let clean = clean.trim().to_owned();
    if clean.is_empty() || clean == "." || clean == ".." {
        "file".to_owned()
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] =
        b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";
    const PDF: &[u8] = b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n";

    #[test]
    fn the_bytes_decide() {
        assert_eq!(sniff_content_type(None, PNG).ok(), Some("image/png"));
        assert_eq!(
            sniff_content_type(Some("image/png"), PNG).ok(),
            Some("image/png")
        );
        assert_eq!(
            sniff_content_type(Some("application/octet-stream"), PDF).ok(),
            Some("application/pdf")
        );
        assert_eq!(
            sniff_content_type(Some("text/markdown; charset=utf-8"), "# hé".as_bytes()).ok(),
            Some("text/plain")
        );
    }

    #[test]
    fn a_declared_type_that_the_bytes_deny_is_refused() {
        let err = sniff_content_type(Some("image/png"), PDF).unwrap_err();
        assert_eq!(err.code(), crate::ErrorCode::UnsupportedFileType);
        assert!(err.to_string().contains("application/pdf"), "{err}");
        // An SVG is text that claims to be an image: refused (it could carry script).
        let svg = b"<svg xmlns=\"http://www.w3.org/2000/svg\"></svg>";
        assert!(sniff_content_type(Some("image/svg+xml"), svg).is_err());
    }

    #[test]
    fn binaries_of_other_types_are_refused() {
        let zip = b"PK\x03\x04\x14\0\0\0\x08\0";
        assert!(sniff_content_type(None, zip).is_err());
        assert!(sniff_content_type(None, b"\0\x01\x02\xff").is_err());
    }

    #[test]
    fn names_are_cleaned() {
        assert_eq!(clean_file_name("../../etc/passwd"), "passwd");
        assert_eq!(clean_file_name("C:\\x\\cat.png"), "cat.png");
        assert_eq!(clean_file_name("a\nb.txt"), "ab.txt");
        assert_eq!(clean_file_name(".."), "file");
        assert_eq!(clean_file_name(&"é".repeat(200)).len(), 254);
    }

    #[test]
    fn attachments_render_for_models() {
        let text = Attachment {
            file_id: FileId::random(),
            name: "notes.txt".into(),
            content_type: "text/plain".into(),
            size: 5,
            data: Some(Bytes::from_static(b"hello")),
        };
        assert_eq!(text.as_text(), "<file name=\"notes.txt\">\nhello\n</file>");
        assert_eq!(
            text.data_url().as_deref(),
            Some("data:text/plain;base64,aGVsbG8=")
        );
        let gone = Attachment { data: None, ..text };
        assert!(gone.as_text().contains("no longer available"));
        // History never carries the bytes.
        let wire = serde_json::to_value(&gone).unwrap();
        assert!(wire.get("data").is_none(), "{wire}");
    }
}
