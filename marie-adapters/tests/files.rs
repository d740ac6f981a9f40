//! The [`FileStore`] contract, written once and run against every file store: the in-memory
//! one, the directory one (a temp dir per test), and the SQL one on a SQLite file (a temp
//! dir per test) and on PostgreSQL (against `MARIE_TEST_POSTGRES_URL`, by default
//! postgres://postgres@127.0.0.1:5432/postgres, each test in a schema of its own). A
//! database that does not answer fails the tests; none is skipped.
//!
//! Each case is an `async fn` taking a [`Backend`], which opens the store (again, for the
//! cases about what survives a reopening); `file_tests!` instantiates them for one kind of
//! store.

#![allow(clippy::unwrap_used, unreachable_pub)]

mod support {
    #[cfg(feature = "postgres")]
    pub mod postgres;
    #[cfg(any(feature = "sqlite", feature = "disk"))]
    pub mod temp_dir;
}

use std::sync::Arc;
use std::time::Duration;

use marie_core::{
    Bytes, ConversationId, FileId, FileMeta, FileStore, PutOutcome, StoredFile, UserId,
};

type Files = Arc<dyn FileStore>;

/// How long any single operation may take before the test fails.
const WAIT: Duration = Duration::from_secs(10);

fn user(id: &str) -> UserId {
    UserId::parse(id).unwrap()
}

/// A file of `size` bytes of `owner`'s, in conversation `conv-1`.
fn meta(owner: &str, size: u64) -> FileMeta {
    FileMeta {
        file_id: FileId::random(),
        user_id: user(owner),
        conversation_id: ConversationId::parse("conv-1").unwrap(),
        name: "notes.txt".into(),
        content_type: "text/plain".into(),
        size,
        created_at: 1_700_000_000_000,
    }
}

/// `size` bytes, every value from 0 to 255 among them (NULs included), from `seed`.
fn bytes(seed: u8, size: u64) -> Bytes {
    (0..size)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect::<Vec<u8>>()
        .into()
}

/// Stores a file of `size` bytes of `owner`'s under `quota`.
async fn put(store: &Files, owner: &str, size: u64, quota: Option<u64>) -> (FileMeta, PutOutcome) {
    let meta = meta(owner, size);
    let outcome = tokio::time::timeout(WAIT, store.put(&meta, bytes(1, size), quota))
        .await
        .expect("put answers")
        .unwrap();
    (meta, outcome)
}

/// Opens a kind of store, once or again over the same data, and cleans up after a test.
trait Backend {
    async fn open(&self) -> Files;
    async fn finish(self);
}

mod contract {
    use super::*;

    /// What goes in comes out: the record exactly, and the bytes.
    pub async fn a_file_round_trips(backend: &impl Backend) {
        let store = backend.open().await;
        let meta = FileMeta {
            name: "résumé (final).pdf".into(),
            content_type: "application/pdf".into(),
            created_at: 1_765_432_109_876,
            ..super::meta("alice", 4096)
        };
        let data = bytes(7, 4096);
        assert_eq!(
            store.put(&meta, data.clone(), Some(1 << 20)).await.unwrap(),
            PutOutcome::Stored
        );
        assert_eq!(
            store.meta(&meta.file_id).await.unwrap().as_ref(),
            Some(&meta)
        );
        let stored = store.get(&meta.file_id).await.unwrap().unwrap();
        assert_eq!(stored, StoredFile { meta, data });
    }

    pub async fn an_unknown_id_is_none(backend: &impl Backend) {
        let store = backend.open().await;
        put(&store, "alice", 10, None).await;
        let unknown = FileId::random();
        assert_eq!(store.meta(&unknown).await.unwrap(), None);
        assert_eq!(store.get(&unknown).await.unwrap(), None);
        // Ids that look like paths name no file either.
        for odd in [".", "..", "...", "a.json", "x.bin"] {
            let odd = FileId::parse(odd).unwrap();
            assert_eq!(store.meta(&odd).await.unwrap(), None, "{odd}");
            assert_eq!(store.get(&odd).await.unwrap(), None, "{odd}");
        }
        assert_eq!(store.used_bytes(&user("nobody")).await.unwrap(), 0);
    }

    pub async fn used_bytes_add_up_per_user(backend: &impl Backend) {
        let store = backend.open().await;
        for (owner, size) in [("alice", 10), ("bob", 7), ("alice", 20), ("alice", 1)] {
            assert_eq!(put(&store, owner, size, None).await.1, PutOutcome::Stored);
        }
        assert_eq!(store.used_bytes(&user("alice")).await.unwrap(), 31);
        assert_eq!(store.used_bytes(&user("bob")).await.unwrap(), 7);
        assert_eq!(store.used_bytes(&user("carol")).await.unwrap(), 0);
    }

    /// A file that would take its owner past the quota is refused, and nothing of it is
    /// kept; one that fills the quota exactly is taken; other users have quotas of their own.
    pub async fn the_quota_refuses_and_stores_nothing(backend: &impl Backend) {
        let store = backend.open().await;
        let quota = Some(500);
        assert_eq!(put(&store, "alice", 300, quota).await.1, PutOutcome::Stored);
        let (refused, outcome) = put(&store, "alice", 201, quota).await;
        assert_eq!(outcome, PutOutcome::OverQuota { used: 300 });
        assert_eq!(store.meta(&refused.file_id).await.unwrap(), None);
        assert_eq!(store.get(&refused.file_id).await.unwrap(), None);
        assert_eq!(store.used_bytes(&user("alice")).await.unwrap(), 300);
        // A file larger than the whole quota, from a user with nothing stored yet.
        let (huge, outcome) = put(&store, "bob", 501, quota).await;
        assert_eq!(outcome, PutOutcome::OverQuota { used: 0 });
        assert_eq!(store.get(&huge.file_id).await.unwrap(), None);
        assert_eq!(store.used_bytes(&user("bob")).await.unwrap(), 0);
        // Exactly up to the quota.
        assert_eq!(put(&store, "alice", 200, quota).await.1, PutOutcome::Stored);
        assert_eq!(store.used_bytes(&user("alice")).await.unwrap(), 500);
        assert_eq!(
            put(&store, "alice", 1, quota).await.1,
            PutOutcome::OverQuota { used: 500 }
        );
        assert_eq!(put(&store, "bob", 500, quota).await.1, PutOutcome::Stored);
        // No quota: anything.
        assert_eq!(put(&store, "alice", 1000, None).await.1, PutOutcome::Stored);
        assert_eq!(store.used_bytes(&user("alice")).await.unwrap(), 1500);
    }

    /// A deleted file is gone, its bytes no longer count, and deleting it again finds
    /// nothing; a deletion that reopens the store stays done.
    pub async fn a_deleted_file_frees_its_quota(backend: &impl Backend) {
        let store = backend.open().await;
        let quota = Some(500);
        let (kept, _) = put(&store, "alice", 200, quota).await;
        let (deleted, _) = put(&store, "alice", 300, quota).await;
        assert_eq!(
            put(&store, "alice", 1, quota).await.1,
            PutOutcome::OverQuota { used: 500 }
        );
        assert_eq!(
            store.delete(&deleted.file_id).await.unwrap(),
            Some(deleted.clone())
        );
        assert_eq!(store.meta(&deleted.file_id).await.unwrap(), None);
        assert_eq!(store.get(&deleted.file_id).await.unwrap(), None);
        assert_eq!(store.used_bytes(&user("alice")).await.unwrap(), 200);
        assert_eq!(store.delete(&deleted.file_id).await.unwrap(), None);
        assert_eq!(put(&store, "alice", 300, quota).await.1, PutOutcome::Stored);
        assert_eq!(store.meta(&kept.file_id).await.unwrap(), Some(kept.clone()));
        drop(store);
        let store = backend.open().await;
        assert_eq!(store.get(&deleted.file_id).await.unwrap(), None);
    }

    /// 20 uploads at once against a quota that fits exactly 5: exactly 5 are stored, and
    /// every refusal saw the full quota.
    pub async fn concurrent_puts_stop_at_the_quota(backend: &impl Backend) {
        const SIZE: u64 = 100;
        let store = backend.open().await;
        let start = Arc::new(tokio::sync::Barrier::new(20));
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let store = store.clone();
                let start = start.clone();
                tokio::spawn(async move {
                    start.wait().await;
                    put(&store, "alice", SIZE, Some(5 * SIZE)).await
                })
            })
            .collect();
        let mut stored = Vec::new();
        let mut refused = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                (meta, PutOutcome::Stored) => stored.push(meta),
                (meta, PutOutcome::OverQuota { used }) => {
                    assert_eq!(used, 5 * SIZE, "a refusal saw a partial count");
                    refused.push(meta);
                }
                (_, other) => panic!("{other:?}"),
            }
        }
        assert_eq!((stored.len(), refused.len()), (5, 15));
        assert_eq!(store.used_bytes(&user("alice")).await.unwrap(), 5 * SIZE);
        for meta in &stored {
            assert_eq!(store.get(&meta.file_id).await.unwrap().unwrap().meta, *meta);
        }
        for meta in &refused {
            assert_eq!(store.get(&meta.file_id).await.unwrap(), None);
        }
    }

    /// Bytes that are not text, NULs among them, come back exactly; so does an empty file.
    pub async fn binary_bytes_come_back_intact(backend: &impl Backend) {
        let store = backend.open().await;
        let mut raw: Vec<u8> = (0..=255u8).collect();
        raw.extend_from_slice(b"\0\0\0\xff\xfe\x00PNG\r\n\x1a\n\0");
        raw.extend((0..300_000u32).map(|i| (i % 251) as u8));
        let data = Bytes::from(raw);
        let meta = super::meta("alice", data.len() as u64);
        assert_eq!(
            store.put(&meta, data.clone(), None).await.unwrap(),
            PutOutcome::Stored
        );
        assert_eq!(store.get(&meta.file_id).await.unwrap().unwrap().data, data);
        let empty = super::meta("alice", 0);
        assert_eq!(
            store.put(&empty, Bytes::new(), None).await.unwrap(),
            PutOutcome::Stored
        );
        assert_eq!(
            store.get(&empty.file_id).await.unwrap().unwrap().data,
            Bytes::new()
        );
    }

    /// What a store held is there when it is opened again (a restart): records, bytes and
    /// what each user's files take, the quota included.
    #[cfg(any(feature = "disk", feature = "sql"))]
    pub async fn files_survive_reopening(backend: &impl Backend) {
        let store = backend.open().await;
        let (a, _) = put(&store, "alice", 300, Some(500)).await;
        let (b, _) = put(&store, "bob", 50, None).await;
        let (refused, outcome) = put(&store, "alice", 300, Some(500)).await;
        assert_eq!(outcome, PutOutcome::OverQuota { used: 300 });
        drop(store);
        let store = backend.open().await;
        for meta in [&a, &b] {
            let got = store.get(&meta.file_id).await.unwrap().unwrap();
            assert_eq!(got.meta, *meta);
            assert_eq!(got.data, bytes(1, meta.size));
        }
        assert_eq!(store.get(&refused.file_id).await.unwrap(), None);
        assert_eq!(store.used_bytes(&user("alice")).await.unwrap(), 300);
        assert_eq!(store.used_bytes(&user("bob")).await.unwrap(), 50);
        assert_eq!(
            put(&store, "alice", 201, Some(500)).await.1,
            PutOutcome::OverQuota { used: 300 }
        );
        assert_eq!(
            put(&store, "alice", 200, Some(500)).await.1,
            PutOutcome::Stored
        );
    }
}

/// Instantiates contract cases for one kind of store. `$make` is an async fn of the test's
/// name giving a [`Backend`].
macro_rules! file_tests {
    ($kind:ident, $make:path; $($case:ident),+ $(,)?) => {
        mod $kind {
            use super::*;

            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let backend = $make(stringify!($case)).await;
                    contract::$case(&backend).await;
                    backend.finish().await;
                }
            )+
        }
    };
}

// ---------------------------------------------------------------------------------------
// Memory
// ---------------------------------------------------------------------------------------

#[cfg(feature = "memory")]
struct Memory(marie_adapters::MemoryFileStore);

#[cfg(feature = "memory")]
impl Backend for Memory {
    async fn open(&self) -> Files {
        Arc::new(self.0.clone())
    }

    async fn finish(self) {}
}

#[cfg(feature = "memory")]
async fn memory(_test: &str) -> Memory {
    Memory(marie_adapters::MemoryFileStore::new())
}

#[cfg(feature = "memory")]
file_tests!(in_memory, memory;
    a_file_round_trips,
    an_unknown_id_is_none,
    used_bytes_add_up_per_user,
    the_quota_refuses_and_stores_nothing,
    concurrent_puts_stop_at_the_quota,
    binary_bytes_come_back_intact,
    a_deleted_file_frees_its_quota,
);

// ---------------------------------------------------------------------------------------
// A directory
// ---------------------------------------------------------------------------------------

#[cfg(feature = "disk")]
mod disk {
    use super::support::temp_dir::TempDir;
    use super::*;
    use marie_adapters::DiskFileStore;

    pub struct Disk(pub TempDir);

    impl Disk {
        fn dir(&self) -> std::path::PathBuf {
            self.0.path().join("files")
        }
    }

    impl Backend for Disk {
        async fn open(&self) -> Files {
            Arc::new(DiskFileStore::open(self.dir()).await.unwrap())
        }

        async fn finish(self) {}
    }

    pub async fn disk(test: &str) -> Disk {
        Disk(TempDir::new(&format!("files-{test}")))
    }

    fn names(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    /// The directory holds `<id>.bin` (the bytes) and `<id>.json` (the record) per file,
    /// and nothing else once the writes are done.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_bytes_file_and_one_record_per_file() {
        let disk = disk("layout").await;
        let store = disk.open().await;
        let (meta, _) = put(&store, "alice", 64, None).await;
        let id = meta.file_id.as_str();
        assert_eq!(
            names(&disk.dir()),
            [format!("{id}.bin"), format!("{id}.json")]
        );
        assert_eq!(
            std::fs::read(disk.dir().join(format!("{id}.bin"))).unwrap(),
            bytes(1, 64)
        );
        let record: FileMeta =
            serde_json::from_slice(&std::fs::read(disk.dir().join(format!("{id}.json"))).unwrap())
                .unwrap();
        assert_eq!(record, meta);
    }

    /// What a crash in the middle of a write leaves (a temporary file, bytes without a
    /// record) is not a file, does not count, and is removed when the store is opened; a
    /// record that cannot be read is skipped and left alone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn what_an_interrupted_write_leaves_is_no_file() {
        let disk = disk("crash").await;
        let store = disk.open().await;
        let (kept, _) = put(&store, "alice", 10, None).await;
        drop(store);
        let dir = disk.dir();
        let half = FileId::random();
        std::fs::write(dir.join(format!("{half}.1f-0.tmp")), b"half a fi").unwrap();
        let orphan = FileId::random();
        std::fs::write(dir.join(format!("{orphan}.bin")), b"no record").unwrap();
        let garbled = FileId::random();
        std::fs::write(dir.join(format!("{garbled}.bin")), b"bytes").unwrap();
        std::fs::write(dir.join(format!("{garbled}.json")), b"{\"file_id\":").unwrap();
        // A record that names another file than its own name.
        let liar = FileId::random();
        let mut lie = meta("mallory", 5);
        lie.file_id = kept.file_id.clone();
        std::fs::write(dir.join(format!("{liar}.bin")), b"bytes").unwrap();
        std::fs::write(
            dir.join(format!("{liar}.json")),
            serde_json::to_vec(&lie).unwrap(),
        )
        .unwrap();

        let store = disk.open().await;
        assert_eq!(store.used_bytes(&user("alice")).await.unwrap(), 10);
        assert_eq!(store.used_bytes(&user("mallory")).await.unwrap(), 0);
        assert_eq!(store.get(&kept.file_id).await.unwrap().unwrap().meta, kept);
        for id in [&half, &orphan, &garbled, &liar] {
            assert_eq!(store.get(id).await.unwrap(), None, "{id}");
        }
        let left = names(&dir);
        assert!(!left.iter().any(|n| n.ends_with(".tmp")), "{left:?}");
        assert!(!left.contains(&format!("{orphan}.bin")), "{left:?}");
        assert!(left.contains(&format!("{garbled}.json")), "{left:?}");
    }

    /// Ids are the only thing paths are made of, and `.`/`..` are refused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dot_ids_are_refused() {
        let disk = disk("dots").await;
        let store = disk.open().await;
        for id in [".", ".."] {
            let meta = FileMeta {
                file_id: FileId::parse(id).unwrap(),
                ..meta("alice", 3)
            };
            assert!(store.put(&meta, bytes(0, 3), None).await.is_err(), "{id}");
        }
        assert_eq!(store.used_bytes(&user("alice")).await.unwrap(), 0);
        assert_eq!(names(&disk.dir()), Vec::<String>::new());
    }

    /// A directory that cannot be made fails `open` with `Unavailable`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_directory_that_cannot_be_made_fails_open() {
        let disk = disk("blocked").await;
        let blocker = disk.0.path().join("a-file");
        std::fs::write(&blocker, b"").unwrap();
        let result = DiskFileStore::open(blocker.join("files")).await;
        assert!(
            matches!(result, Err(marie_core::StoreError::Unavailable(_))),
            "{result:?}"
        );
    }
}

#[cfg(feature = "disk")]
file_tests!(in_a_directory, disk::disk;
    a_file_round_trips,
    an_unknown_id_is_none,
    used_bytes_add_up_per_user,
    the_quota_refuses_and_stores_nothing,
    concurrent_puts_stop_at_the_quota,
    binary_bytes_come_back_intact,
    files_survive_reopening,
    a_deleted_file_frees_its_quota,
);

// ---------------------------------------------------------------------------------------
// SQL: SQLite files and PostgreSQL
// ---------------------------------------------------------------------------------------

#[cfg(feature = "sql")]
mod sql {
    use super::*;
    use marie_adapters::SqlStore;
    use marie_core::{
        Attachment, ChatMessage, ConversationInfo, Conversations, History, HistoryQuery, MessageId,
        MessageRole,
    };

    #[cfg(feature = "sqlite")]
    pub struct Sqlite(pub super::support::temp_dir::TempDir);

    #[cfg(feature = "sqlite")]
    impl Sqlite {
        pub async fn store(&self) -> SqlStore {
            SqlStore::connect(&self.0.url("marie.db")).await.unwrap()
        }
    }

    #[cfg(feature = "sqlite")]
    impl Backend for Sqlite {
        async fn open(&self) -> Files {
            Arc::new(self.store().await)
        }

        async fn finish(self) {}
    }

    #[cfg(feature = "sqlite")]
    pub async fn sqlite(test: &str) -> Sqlite {
        Sqlite(super::support::temp_dir::TempDir::new(&format!(
            "files-{test}"
        )))
    }

    #[cfg(feature = "postgres")]
    pub use super::support::postgres::Schema;

    #[cfg(feature = "postgres")]
    impl Backend for Schema {
        /// Opening again is what another node, or a restarted one, does.
        async fn open(&self) -> Files {
            Arc::new(self.store().await)
        }

        async fn finish(self) {
            self.drop_all().await;
        }
    }

    #[cfg(feature = "postgres")]
    pub async fn postgres(test: &str) -> Schema {
        Schema::create(&format!("files_{test}")).await
    }

    fn attachment(name: &str, content_type: &str, size: u64) -> Attachment {
        Attachment {
            file_id: FileId::random(),
            name: name.into(),
            content_type: content_type.into(),
            size,
            data: None,
        }
    }

    /// A user message's attachments come back from `history`, `message` and
    /// `prompt_history` as they went in, without bytes (even when the message that was
    /// appended carried some); messages without any have none.
    pub async fn attachments_round_trip_through_history(store: SqlStore) {
        let conv = ConversationId::parse("files-history").unwrap();
        assert!(
            store
                .create_conversation(ConversationInfo::new(
                    conv.clone(),
                    user("alice"),
                    1_700_000_000_000
                ))
                .await
                .unwrap()
        );
        let kept = vec![
            attachment("cat.png", "image/png", 2048),
            attachment("résumé.pdf", "application/pdf", 99_999),
        ];
        let mut sent = kept.clone();
        sent[0].data = Some(Bytes::from_static(b"\x89PNG\r\n\x1a\n\0\0"));
        let question = ChatMessage {
            message_id: MessageId::parse("m1").unwrap(),
            parent_id: None,
            siblings: Vec::new(),
            attachments: sent,
            role: MessageRole::User,
            content: "what is in these?".into(),
            user_id: Some(user("alice")),
            created_at: 1_700_000_000_001,
            parts: Vec::new(),
            assistant: None,
        };
        let answer = ChatMessage {
            message_id: MessageId::parse("m2").unwrap(),
            parent_id: Some(question.message_id.clone()),
            attachments: Vec::new(),
            role: MessageRole::Assistant,
            content: "a cat and a CV".into(),
            user_id: None,
            created_at: 1_700_000_000_002,
            ..question.clone()
        };
        store.append_message(&conv, question.clone()).await.unwrap();
        store.append_message(&conv, answer.clone()).await.unwrap();

        let history = store
            .history(&conv, HistoryQuery::newest(10))
            .await
            .unwrap();
        assert_eq!(history.len(), 2);
        assert_eq!(history[0].attachments, kept);
        assert!(history[0].attachments.iter().all(|a| a.data.is_none()));
        assert_eq!(history[0].content, question.content);
        assert_eq!(history[1].attachments, Vec::new());
        let one = store
            .message(&conv, &question.message_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(one.attachments, kept);

        let prompt = store
            .prompt_history(&conv, HistoryQuery::newest(10))
            .await
            .unwrap();
        assert_eq!(prompt.len(), 2);
        assert_eq!(prompt[0].role, MessageRole::User);
        assert_eq!(prompt[0].attachments, kept);
        assert_eq!(prompt[1].attachments, Vec::new());
    }

    #[cfg(feature = "sqlite")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn attachments_round_trip_through_sqlite_history() {
        let backend = sqlite("attachments").await;
        attachments_round_trip_through_history(backend.store().await).await;
    }

    #[cfg(feature = "postgres")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn attachments_round_trip_through_postgres_history() {
        let schema = postgres("attachments").await;
        attachments_round_trip_through_history(schema.store().await).await;
        schema.drop_all().await;
    }

    /// `marie_files.data` is declared `BYTEA`, a type SQLite does not know (NUMERIC
    /// affinity): the bytes are kept as the BLOB they were bound as, not converted.
    #[cfg(feature = "sqlite")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_keeps_the_bytes_as_a_blob() {
        use sqlx::Connection;

        let backend = sqlite("blob").await;
        let store = backend.open().await;
        // Bytes that read as a number or as text, would affinity apply to them.
        for data in [&b"12345"[..], b"1e3", b"text", b"\0"] {
            let meta = meta("alice", data.len() as u64);
            let data = Bytes::copy_from_slice(data);
            store.put(&meta, data.clone(), None).await.unwrap();
            assert_eq!(store.get(&meta.file_id).await.unwrap().unwrap().data, data);
        }
        let mut raw = sqlx::SqliteConnection::connect(&backend.0.url("marie.db"))
            .await
            .unwrap();
        let kinds: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT typeof(data) FROM marie_files")
                .fetch_all(&mut raw)
                .await
                .unwrap();
        assert_eq!(kinds, ["blob"]);
    }

    /// Two nodes on one PostgreSQL, 10 uploads each at once, against one user's quota that
    /// fits 5 in all: exactly 5 are stored, whichever node took them.
    #[cfg(feature = "postgres")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_postgres_nodes_share_one_quota() {
        const SIZE: u64 = 1000;
        let schema = postgres("two_nodes").await;
        let nodes = [schema.open().await, schema.open().await];
        let start = Arc::new(tokio::sync::Barrier::new(20));
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let store = nodes[i % 2].clone();
                let start = start.clone();
                tokio::spawn(async move {
                    start.wait().await;
                    put(&store, "alice", SIZE, Some(5 * SIZE)).await.1
                })
            })
            .collect();
        let mut stored = 0;
        for task in tasks {
            if task.await.unwrap() == PutOutcome::Stored {
                stored += 1;
            }
        }
        assert_eq!(stored, 5);
        for node in &nodes {
            assert_eq!(node.used_bytes(&user("alice")).await.unwrap(), 5 * SIZE);
        }
        schema.drop_all().await;
    }
}

#[cfg(feature = "sqlite")]
file_tests!(in_sqlite, sql::sqlite;
    a_file_round_trips,
    an_unknown_id_is_none,
    used_bytes_add_up_per_user,
    the_quota_refuses_and_stores_nothing,
    concurrent_puts_stop_at_the_quota,
    binary_bytes_come_back_intact,
    files_survive_reopening,
    a_deleted_file_frees_its_quota,
);

#[cfg(feature = "postgres")]
file_tests!(in_postgres, sql::postgres;
    a_file_round_trips,
    an_unknown_id_is_none,
    used_bytes_add_up_per_user,
    the_quota_refuses_and_stores_nothing,
    concurrent_puts_stop_at_the_quota,
    binary_bytes_come_back_intact,
    files_survive_reopening,
    a_deleted_file_frees_its_quota,
);
