//! A real Redis restart: a private `redis-server` (never the shared one on 6379) on an
//! ephemeral port, with an append-only file, killed with SIGKILL in the middle of use and
//! started again on the same port. The store and the control bus recover by themselves:
//! scripts are loaded again (Redis forgot them), the bus subscribes again, and everything
//! acknowledged before the kill is still there.

#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, unreachable_pub)]

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use marie_adapters::{RedisConfig, RedisControlBus, RedisStore};
use marie_core::{
    ChatMessage, ControlBus, ControlMessage, ConversationId, ConversationInfo, Conversations,
    History, HistoryQuery, MessageId, MessageRole, StoreError, StreamId, UserId,
};

const WAIT: Duration = Duration::from_secs(10);

/// A `redis-server` of this test's own, persisting every write to `dir`.
struct PrivateRedis {
    port: u16,
    dir: std::path::PathBuf,
    child: Option<Child>,
}

impl PrivateRedis {
    fn start() -> Self {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let dir = std::env::temp_dir().join(format!("marie-redis-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut redis = Self {
            port,
            dir,
            child: None,
        };
        redis.spawn();
        redis
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test installs it)");
        self.child = Some(child);
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: no shutdown, no final save.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Waits, bounded, until the server answers PING.
    async fn ready(&self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Ok(client) = redis::Client::open(self.url())
                && let Ok(Ok(mut conn)) = tokio::time::timeout(
                    Duration::from_millis(500),
                    client.get_multiplexed_async_connection(),
                )
                .await
                && redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .is_ok()
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server never answered"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn message(i: usize) -> ChatMessage {
    ChatMessage {
        message_id: MessageId::parse(format!("m{i:05}")).unwrap(),
        role: MessageRole::User,
        content: format!("message {i}"),
        user_id: Some(UserId::parse("alice").unwrap()),
        created_at: 1_700_000_000_000 + i as u64,
        parts: Vec::new(),
        parent_id: i
            .checked_sub(1)
            .map(|p| MessageId::parse(format!("m{p:05}")).unwrap()),
        siblings: Vec::new(),
        attachments: Vec::new(),
        assistant: None,
    }
}

fn cancel(n: usize) -> ControlMessage {
    ControlMessage::CancelAnswer {
        conversation_id: ConversationId::parse("c").unwrap(),
        stream_id: StreamId::parse(format!("s{n}")).unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_and_bus_survive_a_redis_restart() {
    let mut server = PrivateRedis::start();
    server.ready().await;
    let config = RedisConfig::new(server.url())
        .timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_millis(300))
        .health_interval(Duration::from_millis(100));
    let store = RedisStore::connect(config.clone()).await.unwrap();
    let publisher = RedisControlBus::connect(config.clone()).await.unwrap();
    let listener = RedisControlBus::connect(config).await.unwrap();
    let heard: Arc<(Mutex<Vec<ControlMessage>>, tokio::sync::Notify)> = Arc::default();
    let h = heard.clone();
    listener.subscribe(Arc::new(move |m| {
        h.0.lock().unwrap().push(m);
        h.1.notify_waiters();
    }));

    let c = ConversationId::parse("survivor").unwrap();
    store
        .create_conversation(ConversationInfo::new(
            c.clone(),
            UserId::parse("alice").unwrap(),
            1,
        ))
        .await
        .unwrap();
    for i in 0..5 {
        store.append_message(&c, message(i)).await.unwrap();
    }
    publisher.publish(cancel(0)).await.unwrap();

    server.kill();
    // Down: clear errors, quickly.
    let started = std::time::Instant::now();
    assert!(matches!(
        store.append_message(&c, message(99)).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        store
            .history(
                &c,
                HistoryQuery {
                    before: None,
                    limit: 10
                }
            )
            .await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(publisher.publish(cancel(1)).await.is_err());
    let down_errors = started.elapsed();
    assert!(down_errors < Duration::from_secs(3), "{down_errors:?}");

    server.spawn();
    server.ready().await;
    let back = std::time::Instant::now();

    // The store works again (its Lua scripts are loaded anew: Redis forgot them).
    let deadline = tokio::time::Instant::now() + WAIT;
    while store.ping().await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "store never reconnected"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    store.append_message(&c, message(5)).await.unwrap();
    let history = store
        .history(
            &c,
            HistoryQuery {
                before: None,
                limit: 50,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        history,
        (0..6).map(message).collect::<Vec<_>>(),
        "every acknowledged message survived; the refused one is not there"
    );
    assert_eq!(
        store.members(&c).await.unwrap(),
        vec![UserId::parse("alice").unwrap()]
    );

    // The listener subscribed again by itself. Pub/sub keeps nothing, so publish until it
    // hears one (bounded).
    let mut n = 100;
    loop {
        let _ = publisher.publish(cancel(n)).await;
        let notified = heard.1.notified();
        let got = heard.0.lock().unwrap().contains(&cancel(n));
        if got
            || tokio::time::timeout(Duration::from_millis(100), notified)
                .await
                .is_ok()
                && heard.0.lock().unwrap().contains(&cancel(n))
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the bus never resubscribed"
        );
        n += 1;
    }
    eprintln!(
        "restart: errors while down within {down_errors:?}; store and bus back within {:?} \
         of the server answering",
        back.elapsed()
    );
    assert!(heard.0.lock().unwrap().contains(&cancel(0)));
}
