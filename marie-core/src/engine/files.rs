//! Files: an upload checked and stored, a file read by a member, the files a message names
//! checked before it is sent, and their bytes read for the model's request.

use bytes::Bytes;

use super::ChatEngine;
use crate::{
    Attachment, ConversationId, Error, FileId, FileMeta, HistoryQuery, Identity, PromptMessage,
    PutOutcome, StoredFile, clean_file_name, now_millis, sniff_content_type,
};

/// A file to store, as a front end received it.
#[derive(Clone, Debug)]
pub struct Upload {
    /// The conversation it is for: the uploader must have access, and only its members
    /// may read it.
    pub conversation_id: ConversationId,
    /// The name the client gave (cleaned before it is stored).
    pub name: String,
    /// The type the client declared, if any: the bytes must agree
    /// ([`sniff_content_type`]).
    pub content_type: Option<String>,
    /// The bytes.
    pub data: Bytes,
}

impl ChatEngine {
    fn file_store(&self) -> Result<&std::sync::Arc<dyn crate::FileStore>, Error> {
        self.shared
            .files
            .as_ref()
            .ok_or(Error::NotFound("this server takes no files"))
    }

    /// `POST /api/chat/files`: checks access, size, type (from the bytes) and the user's
    /// quota, then stores the file. Nothing is stored when a check fails.
    pub async fn upload(&self, who: &Identity, upload: Upload) -> Result<FileMeta, Error> {
        let files = self.file_store()?;
        self.authorize(who, &upload.conversation_id).await?;
        let max = self.shared.config.max_file_bytes;
        if upload.data.len() > max {
            return Err(Error::PayloadTooLarge(format!(
                "the file is larger than {max} bytes"
            )));
        }
        if upload.data.is_empty() {
            return Err(Error::BadRequest("the file is empty".into()));
        }
        let content_type = sniff_content_type(upload.content_type.as_deref(), &upload.data)?;
        let meta = FileMeta {
            file_id: FileId::random(),
            user_id: who.user_id.clone(),
            conversation_id: upload.conversation_id,
            name: clean_file_name(&upload.name),
            content_type: content_type.to_owned(),
            size: upload.data.len() as u64,
            created_at: now_millis(),
        };
        let quota = self.shared.config.file_quota_bytes;
        match files.put(&meta, upload.data, quota).await? {
            PutOutcome::Stored => {
                metrics::counter!("marie_files_uploaded_total").increment(1);
                Ok(meta)
            }
            PutOutcome::OverQuota { used } => Err(Error::QuotaExceeded {
                used,
                quota: quota.unwrap_or(u64::MAX),
            }),
        }
    }

    /// `GET /api/chat/files/{file_id}`: a file, for a member of the conversation it was
    /// uploaded to. To anyone else it does not exist (`not_found`, as an unknown id).
    pub async fn file(&self, who: &Identity, file: &FileId) -> Result<StoredFile, Error> {
        self.visible_file(who, file).await?;
        self.file_store()?
            .get(file)
            .await?
            .ok_or(Error::NotFound("no such file"))
    }

    /// `DELETE /api/chat/files/{file_id}`: its owner removes a file, which frees its bytes
    /// from their quota. Messages that carried it keep their reference; the model is then
    /// told the file is gone, and reading it is `not_found`.
    pub async fn delete_file(&self, who: &Identity, file: &FileId) -> Result<FileMeta, Error> {
        let meta = self.visible_file(who, file).await?;
        if meta.user_id != who.user_id {
            return Err(Error::Forbidden("only its owner may delete a file"));
        }
        self.file_store()?
            .delete(file)
            .await?
            .ok_or(Error::NotFound("no such file"))
    }

    /// A file's record, for a member of its conversation; to others it does not exist.
    async fn visible_file(&self, who: &Identity, file: &FileId) -> Result<FileMeta, Error> {
        let meta = self
            .file_store()?
            .meta(file)
            .await?
            .ok_or(Error::NotFound("no such file"))?;
        match self.authorize(who, &meta.conversation_id).await {
            Ok(_) => Ok(meta),
            Err(Error::Forbidden(_) | Error::NotFound(_)) => Err(Error::NotFound("no such file")),
            Err(e) => Err(e),
        }
    }

    /// The files a message of `who` in `conversation` names, checked: each exists, was
    /// uploaded by `who` to this conversation, and is named once.
    pub(super) async fn attachable(
        &self,
        who: &Identity,
        conversation: &ConversationId,
        ids: &[FileId],
    ) -> Result<Vec<Attachment>, Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let max = self.shared.config.max_attachments;
        if ids.len() > max {
            return Err(Error::BadRequest(format!(
                "a message may carry at most {max} files"
            )));
        }
        let files = self.file_store()?;
        let mut attachments: Vec<Attachment> = Vec::with_capacity(ids.len());
        for id in ids {
            if attachments.iter().any(|a| &a.file_id == id) {
                return Err(Error::BadRequest(format!("file {id} is attached twice")));
            }
            let meta = files
                .meta(id)
                .await?
                .ok_or(Error::NotFound("no such file"))?;
            if &meta.conversation_id != conversation {
                // Someone else's file elsewhere does not exist for this user.
                if meta.user_id != who.user_id {
                    return Err(Error::NotFound("no such file"));
                }
                return Err(Error::BadRequest(format!(
                    "file {id} was uploaded to another conversation: upload it to this one"
                )));
            }
            if meta.user_id != who.user_id {
                return Err(Error::Forbidden(
                    "a message may only carry its author's files",
                ));
            }
            attachments.push(meta.attachment());
        }
        Ok(attachments)
    }

    /// The store's prompt history, with the bytes of the files its messages carry (a file
    /// gone from the store stays a reference: the provider says so to the model).
    pub(super) async fn prompt_history(
        &self,
        conversation: &ConversationId,
        query: HistoryQuery,
    ) -> Result<Vec<PromptMessage>, Error> {
        let mut messages = self
            .shared
            .stores
            .history()
            .prompt_history(conversation, query)
            .await?;
        let Some(files) = &self.shared.files else {
            return Ok(messages);
        };
        for attachment in messages.iter_mut().flat_map(|m| m.attachments.iter_mut()) {
            if let Some(file) = files.get(&attachment.file_id).await? {
                attachment.data = Some(file.data);
            }
        }
        Ok(messages)
    }
}
