//! [`MemoryFileStore`]: uploaded files in this process's memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use marie_core::{
    Bytes, ConversationId, FileId, FileMeta, FileStore, PutOutcome, StoreError, StoredFile, UserId,
};

/// Files in memory: for one node, tests and the demo. Nothing survives a restart, and every
/// byte counts against the process's memory: the quota
/// ([`EngineConfig::file_quota_bytes`](marie_core::EngineConfig::file_quota_bytes)) is what
/// bounds it.
///
/// Cheap to clone: clones share the files.
#[derive(Clone, Default)]
pub struct MemoryFileStore {
    inner: Arc<Mutex<Files>>,
}

#[derive(Default)]
struct Files {
    files: HashMap<FileId, StoredFile>,
    used: HashMap<UserId, u64>,
}

impl MemoryFileStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Never held across an `.await`; a panic while held leaves consistent data (each
    /// change is one insert after its checks).
    fn lock(&self) -> MutexGuard<'_, Files> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl FileStore for MemoryFileStore {
    async fn put(
        &self,
        meta: &FileMeta,
        data: Bytes,
        quota: Option<u64>,
    ) -> Result<PutOutcome, StoreError> {
        let mut files = self.lock();
        let used = files.used.get(&meta.user_id).copied().unwrap_or(0);
        if quota.is_some_and(|quota| used + meta.size > quota) {
            return Ok(PutOutcome::OverQuota { used });
        }
        let stored = StoredFile {
            meta: meta.clone(),
            data,
        };
        if let Some(old) = files.files.insert(meta.file_id.clone(), stored) {
            // The same id again (never, with random ids): its old bytes no longer count.
            if let Some(u) = files.used.get_mut(&old.meta.user_id) {
                *u = u.saturating_sub(old.meta.size);
            }
        }
        *files.used.entry(meta.user_id.clone()).or_default() += meta.size;
        Ok(PutOutcome::Stored)
    }

    async fn meta(&self, file: &FileId) -> Result<Option<FileMeta>, StoreError> {
        Ok(self.lock().files.get(file).map(|f| f.meta.clone()))
    }

    async fn get(&self, file: &FileId) -> Result<Option<StoredFile>, StoreError> {
        Ok(self.lock().files.get(file).cloned())
    }

    async fn used_bytes(&self, user: &UserId) -> Result<u64, StoreError> {
        Ok(self.lock().used.get(user).copied().unwrap_or(0))
    }

    async fn delete(&self, file: &FileId) -> Result<Option<FileMeta>, StoreError> {
        let mut files = self.lock();
        let Some(removed) = files.files.remove(file) else {
            return Ok(None);
        };
        if let Some(used) = files.used.get_mut(&removed.meta.user_id) {
            *used = used.saturating_sub(removed.meta.size);
        }
        Ok(Some(removed.meta))
    }

    async fn delete_conversation_files(
        &self,
        conversation: &ConversationId,
    ) -> Result<Vec<FileMeta>, StoreError> {
        let mut files = self.lock();
        let ids: Vec<FileId> = files
            .files
            .values()
            .filter(|f| f.meta.conversation_id == *conversation)
            .map(|f| f.meta.file_id.clone())
            .collect();
        let mut removed = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(file) = files.files.remove(&id) {
                if let Some(used) = files.used.get_mut(&file.meta.user_id) {
                    *used = used.saturating_sub(file.meta.size);
                }
                removed.push(file.meta);
            }
        }
        Ok(removed)
    }
}
