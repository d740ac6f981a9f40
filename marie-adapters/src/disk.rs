//! [`DiskFileStore`]: uploaded files in a directory of this machine.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use marie_core::{
    Bytes, ConversationId, FileId, FileMeta, FileStore, PutOutcome, StoreError, StoredFile, UserId,
};
use tokio::io::AsyncWriteExt;

/// Uploaded files in a directory: for one node whose files should survive a restart without
/// a database. Every file is two files of the directory, named by its id: `<id>.bin`, its
/// bytes, and `<id>.json`, its record ([`FileMeta`] as JSON).
///
/// - Each is written under a temporary name (`<id>.<n>.tmp`), flushed to the disk and then
///   renamed into place, the bytes first; the record is what makes a file exist. A crash
///   leaves at most a temporary file or bytes without a record, which nobody sees and
///   [`open`](Self::open) removes; never half a file.
/// - [`open`](Self::open) reads the records to know the files and what each user's take; the
///   store keeps that in memory, and the quota is checked and the upload's bytes counted in
///   one step under a lock (released if the write fails), so concurrent uploads cannot both
///   slip under it. One store, in one process, per directory: two would not see each
///   other's uploads in their counts.
/// - Paths are built only from a [`FileId`] (`[A-Za-z0-9_.:@-]`, and never `.` or `..`),
///   so an id cannot name a file outside the directory. `:` makes ids that Windows cannot
///   use as file names; the ids MARIE makes are hexadecimal.
/// - Storing an id the store already holds (never, with the random ids MARIE makes)
///   replaces the file; that replacement is not atomic between the bytes and the record.
///
/// Cheap to clone: clones share the directory and its counts.
#[derive(Clone)]
pub struct DiskFileStore {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    index: Mutex<Index>,
    /// Makes temporary names unique: this store's own part and a counter.
    nonce: u64,
    temps: AtomicU64,
}

#[derive(Default)]
struct Index {
    files: HashMap<FileId, FileMeta>,
    used: HashMap<UserId, u64>,
    /// Ids being written: their bytes already count in `used`.
    pending: HashSet<FileId>,
}

impl Index {
    fn release(&mut self, user: &UserId, size: u64) {
        if let Some(used) = self.used.get_mut(user) {
            *used = used.saturating_sub(size);
            if *used == 0 {
                self.used.remove(user);
            }
        }
    }
}

impl std::fmt::Debug for DiskFileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskFileStore")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

impl DiskFileStore {
    /// Opens the store in `dir`, creating the directory if it is missing: reads the records
    /// there (a record that cannot be read is left alone and skipped, with a warning) and
    /// removes what interrupted writes left (temporary files, bytes without a record).
    pub async fn open(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir = dir.into();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| io_error("creating the directory", &dir, e))?;
        let mut names = tokio::fs::read_dir(&dir)
            .await
            .map_err(|e| io_error("reading the directory", &dir, e))?;
        let mut records = Vec::new();
        let mut data = Vec::new();
        let mut leftovers = Vec::new();
        while let Some(entry) = names
            .next_entry()
            .await
            .map_err(|e| io_error("reading the directory", &dir, e))?
        {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name.ends_with(".tmp") {
                leftovers.push(name);
            } else if let Some(id) = name.strip_suffix(".json") {
                records.push(id.to_owned());
            } else if let Some(id) = name.strip_suffix(".bin") {
                data.push(id.to_owned());
            }
        }
        let mut index = Index::default();
        for id in &records {
            match read_record(&dir, id).await {
                Ok(meta) => {
                    *index.used.entry(meta.user_id.clone()).or_default() += meta.size;
                    index.files.insert(meta.file_id.clone(), meta);
                }
                Err(why) => {
                    tracing::warn!(dir = %dir.display(), file = %id, "file record skipped: {why}");
                }
            }
        }
        // Bytes whose record was never written: a crash between the two renames.
        let recorded: HashSet<&String> = records.iter().collect();
        leftovers.extend(
            data.iter()
                .filter(|id| !recorded.contains(id))
                .map(|id| format!("{id}.bin")),
        );
        for name in leftovers {
            let path = dir.join(&name);
            match tokio::fs::remove_file(&path).await {
                Ok(()) => tracing::debug!(path = %path.display(), "interrupted upload removed"),
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "could not remove"),
            }
        }
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ (u64::from(std::process::id()) << 32);
        Ok(Self {
            inner: Arc::new(Inner {
                dir,
                index: Mutex::new(index),
                nonce,
                temps: AtomicU64::new(0),
            }),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }
}

impl Inner {
    /// Never held across an `.await`; a panic while held leaves consistent data (each
    /// change is a few map updates after its checks).
    fn lock(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn data_path(&self, id: &FileId) -> Option<PathBuf> {
        file_stem(id).map(|stem| self.dir.join(format!("{stem}.bin")))
    }

    fn record_path(&self, id: &FileId) -> Option<PathBuf> {
        file_stem(id).map(|stem| self.dir.join(format!("{stem}.json")))
    }

    fn temp_path(&self, id: &FileId) -> Option<PathBuf> {
        let n = self.temps.fetch_add(1, Ordering::Relaxed);
        file_stem(id).map(|stem| self.dir.join(format!("{stem}.{:x}-{n:x}.tmp", self.nonce)))
    }

    /// Writes the bytes, then the record, each to a temporary name renamed into place. On
    /// failure removes what it wrote (best effort) and says whether a file this id named
    /// before is gone too.
    async fn write(&self, meta: &FileMeta, data: &[u8]) -> Result<(), (StoreError, Lost)> {
        let id = &meta.file_id;
        let unnamed = || StoreError::Unavailable(format!("the file id {id} names no file"));
        let paths = self
            .data_path(id)
            .zip(self.record_path(id))
            .zip(self.temp_path(id).zip(self.temp_path(id)));
        let Some(((data_path, record_path), (data_temp, record_temp))) = paths else {
            return Err((unnamed(), Lost::Nothing));
        };
        let record = serde_json::to_vec(meta)
            .map_err(|e| (StoreError::Corrupt(e.to_string()), Lost::Nothing))?;

        if let Err(e) = write_synced(&data_temp, data).await {
            let _ = tokio::fs::remove_file(&data_temp).await;
            return Err((io_error("writing", &data_temp, e), Lost::Nothing));
        }
        if let Err(e) = tokio::fs::rename(&data_temp, &data_path).await {
            let _ = tokio::fs::remove_file(&data_temp).await;
            return Err((io_error("renaming", &data_temp, e), Lost::Nothing));
        }
        let written = async {
            // The bytes' name is on the disk before the record's.
            sync_dir(&self.dir).await?;
            write_synced(&record_temp, &record).await?;
            tokio::fs::rename(&record_temp, &record_path).await?;
            sync_dir(&self.dir).await
        }
        .await;
        if let Err(e) = written {
            let _ = tokio::fs::remove_file(&record_temp).await;
            // Bytes without a record are not a file (and `open` would remove them). The
            // bytes of a file this id named before are overwritten: its record goes too.
            let _ = tokio::fs::remove_file(&data_path).await;
            let _ = tokio::fs::remove_file(&record_path).await;
            return Err((
                io_error("writing the record of", &record_path, e),
                Lost::Previous,
            ));
        }
        Ok(())
    }
}

/// What a failed write took with it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lost {
    /// Nothing the store held.
    Nothing,
    /// The file the id named before, if there was one.
    Previous,
}

/// The bytes an upload reserved in its owner's count, given back unless the upload was
/// stored (also when the writing task panics).
struct Reservation {
    inner: Arc<Inner>,
    meta: FileMeta,
    /// Settled: nothing to give back on drop.
    settled: bool,
}

impl Reservation {
    fn finish(mut self, written: Result<(), Lost>) {
        let mut index = self.inner.lock();
        let id = &self.meta.file_id;
        index.pending.remove(id);
        let old = match written {
            Ok(()) => index.files.insert(id.clone(), self.meta.clone()),
            Err(lost) => {
                index.release(&self.meta.user_id, self.meta.size);
                match lost {
                    Lost::Previous => index.files.remove(id),
                    Lost::Nothing => None,
                }
            }
        };
        if let Some(old) = old {
            index.release(&old.user_id, old.size);
        }
        self.settled = true;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.settled {
            let mut index = self.inner.lock();
            index.pending.remove(&self.meta.file_id);
            index.release(&self.meta.user_id, self.meta.size);
        }
    }
}

#[async_trait]
impl FileStore for DiskFileStore {
    async fn put(
        &self,
        meta: &FileMeta,
        data: Bytes,
        quota: Option<u64>,
    ) -> Result<PutOutcome, StoreError> {
        if file_stem(&meta.file_id).is_none() {
            return Err(StoreError::Unavailable(format!(
                "the file id {} names no file",
                meta.file_id
            )));
        }
        {
            let mut index = self.inner.lock();
            if index.pending.contains(&meta.file_id) {
                return Err(StoreError::Unavailable(format!(
                    "the file {} is being stored",
                    meta.file_id
                )));
            }
            let used = index.used.get(&meta.user_id).copied().unwrap_or(0);
            if quota.is_some_and(|quota| used.saturating_add(meta.size) > quota) {
                return Ok(PutOutcome::OverQuota { used });
            }
            *index.used.entry(meta.user_id.clone()).or_default() += meta.size;
            index.pending.insert(meta.file_id.clone());
        }
        let reservation = Reservation {
            inner: self.inner.clone(),
            meta: meta.clone(),
            settled: false,
        };
        // A task of its own, so that a caller who stops waiting does not leave the write,
        // and the counts, half done.
        let inner = self.inner.clone();
        let meta = meta.clone();
        tokio::spawn(async move {
            let written = inner.write(&meta, &data).await;
            reservation.finish(written.as_ref().map(drop).map_err(|(_, lost)| *lost));
            written.map_err(|(e, _)| e)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("storing a file: {e}")))??;
        Ok(PutOutcome::Stored)
    }

    async fn meta(&self, file: &FileId) -> Result<Option<FileMeta>, StoreError> {
        Ok(self.inner.lock().files.get(file).cloned())
    }

    async fn get(&self, file: &FileId) -> Result<Option<StoredFile>, StoreError> {
        let Some(meta) = self.inner.lock().files.get(file).cloned() else {
            return Ok(None);
        };
        let Some(path) = self.inner.data_path(file) else {
            return Ok(None);
        };
        match tokio::fs::read(&path).await {
            Ok(data) => Ok(Some(StoredFile {
                meta,
                data: data.into(),
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::Corrupt(format!(
                "the bytes of file {file} are missing from {}",
                self.inner.dir.display()
            ))),
            Err(e) => Err(io_error("reading", &path, e)),
        }
    }

    async fn used_bytes(&self, user: &UserId) -> Result<u64, StoreError> {
        Ok(self.inner.lock().used.get(user).copied().unwrap_or(0))
    }

    async fn delete(&self, file: &FileId) -> Result<Option<FileMeta>, StoreError> {
        let (Some(data_path), Some(record_path)) =
            (self.inner.data_path(file), self.inner.record_path(file))
        else {
            return Ok(None);
        };
        let meta = {
            let mut index = self.inner.lock();
            if index.pending.contains(file) {
                return Err(StoreError::Unavailable(format!(
                    "the file {file} is being stored"
                )));
            }
            let Some(meta) = index.files.remove(file) else {
                return Ok(None);
            };
            index.release(&meta.user_id, meta.size);
            meta
        };
        // The record first: without it the bytes are no file, and `open` removes them
        // should this stop half way.
        for path in [record_path, data_path] {
            match tokio::fs::remove_file(&path).await {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("removing", &path, e)),
            }
        }
        Ok(Some(meta))
    }

    async fn delete_conversation_files(
        &self,
        conversation: &ConversationId,
    ) -> Result<Vec<FileMeta>, StoreError> {
        let ids: Vec<FileId> = self
            .inner
            .lock()
            .files
            .values()
            .filter(|meta| meta.conversation_id == *conversation)
            .map(|meta| meta.file_id.clone())
            .collect();
        let mut removed = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(meta) = self.delete(&id).await? {
                removed.push(meta);
            }
        }
        Ok(removed)
    }
}

/// What names a file's two files in the directory: its id, when that is a plain name (the
/// id's own rules already keep out `/` and `\`; `.` and `..` are refused here).
fn file_stem(id: &FileId) -> Option<&str> {
    let id = id.as_str();
    let plain = !id.is_empty()
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'@'));
    plain.then_some(id)
}

/// The record of the file named `stem`, if it is one: it must name that same file.
async fn read_record(dir: &Path, stem: &str) -> Result<FileMeta, String> {
    let id = FileId::parse(stem).map_err(|e| e.to_string())?;
    if file_stem(&id).is_none() {
        return Err("not a file id".into());
    }
    let raw = tokio::fs::read(dir.join(format!("{stem}.json")))
        .await
        .map_err(|e| e.to_string())?;
    let meta: FileMeta = serde_json::from_slice(&raw).map_err(|e| e.to_string())?;
    if meta.file_id != id {
        return Err(format!("the record names file {}", meta.file_id));
    }
    match tokio::fs::metadata(dir.join(format!("{stem}.bin"))).await {
        Ok(data) if data.is_file() => Ok(meta),
        Ok(_) => Err("its bytes are not a file".into()),
        Err(e) => Err(format!("its bytes: {e}")),
    }
}

/// Writes `data` to a new file at `path` and flushes it to the disk.
async fn write_synced(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .await?;
    file.write_all(data).await?;
    file.sync_all().await
}

/// Flushes the directory's entries (the renames) to the disk, where that can be asked.
async fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    tokio::fs::File::open(dir).await?.sync_all().await?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn io_error(what: &str, path: &Path, e: io::Error) -> StoreError {
    StoreError::Unavailable(format!("{what} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_ids_name_files() {
        let id = |s: &str| FileId::parse(s).ok();
        for bad in [".", ".."] {
            if let Some(bad) = id(bad) {
                assert_eq!(file_stem(&bad), None, "{bad}");
            }
        }
        assert_eq!(file_stem(&id("a1b2").unwrap()), Some("a1b2"));
        assert_eq!(file_stem(&id("...").unwrap()), Some("..."));
        assert!(FileId::parse("../etc").is_err());
        assert!(FileId::parse("a/b").is_err());
    }
}
