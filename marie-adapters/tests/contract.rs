//! The [`RoomStore`] contract, written once and run against every store: the in-memory one,
//! the Redis one (against the Redis of `MARIE_TEST_REDIS_URL`, by default
//! 127.0.0.1:6379, each test under a key prefix of its own), and the SQL one on a SQLite
//! file (a temp dir per test) and on PostgreSQL (against `MARIE_TEST_POSTGRES_URL`, by
//! default postgres://postgres@127.0.0.1:5432/postgres, each test in a schema of its own).
//! A database that does not answer fails the tests; none is skipped.
//!
//! Each case is an `async fn` taking a fresh store; `contract_tests!` instantiates all of
//! them for one kind of store.

#![allow(clippy::unwrap_used, unreachable_pub)]

mod support {
    #[cfg(feature = "postgres")]
    pub mod postgres;
    #[cfg(feature = "redis")]
    pub mod proxy;
    #[cfg(feature = "sqlite")]
    pub mod temp_dir;
}

use std::sync::Arc;
use std::time::Duration;

use marie_core::{
    AnswerLease, AnswerLeases, AnswerPolicy, ApprovalDecision, ApprovalId, ApprovalOutcome,
    ApprovalRecord, Approvals, BudgetPeriod, ChatMessage, ConversationChange, ConversationId,
    ConversationInfo, ConversationPage, Conversations, History, HistoryQuery, LastMessage,
    ListQuery, ListedConversation, MessageId, MessagePart, MessageRole, QueuedSend, RoomStore,
    SendQueue, SessionId, SessionRecord, Sessions, StoreError, StreamId, ToolApprovalRequest,
    UsageLedger, UserId, now_millis,
};

/// How long any single wait may take before the test fails.
const WAIT: Duration = Duration::from_secs(5);

fn conv(id: &str) -> ConversationId {
    ConversationId::parse(id).unwrap()
}

fn user(id: &str) -> UserId {
    UserId::parse(id).unwrap()
}

fn stream(id: &str) -> StreamId {
    StreamId::parse(id).unwrap()
}

fn info(id: &str, creator: &str) -> ConversationInfo {
    ConversationInfo::new(conv(id), user(creator), 1_700_000_000_000)
}

/// A conversation of `creator` last active at `at`.
fn info_at(id: &str, creator: &str, at: u64) -> ConversationInfo {
    ConversationInfo::new(conv(id), user(creator), at)
}

/// The ids of a page of a user's list.
fn listed(page: &ConversationPage) -> Vec<String> {
    page.conversations
        .iter()
        .map(|c| c.info.conversation_id.to_string())
        .collect()
}

fn list_query(limit: usize) -> ListQuery {
    ListQuery {
        before: None,
        limit,
        query: None,
        archived: false,
    }
}

fn said(at: u64, text: &str) -> LastMessage {
    LastMessage {
        role: MessageRole::User,
        preview: text.to_owned(),
        created_at: at,
    }
}

fn id(i: usize) -> MessageId {
    MessageId::parse(format!("m{i:05}")).unwrap()
}

/// Message `i` after message `parent`.
fn message_after(i: usize, parent: Option<usize>) -> ChatMessage {
    ChatMessage {
        parent_id: parent.map(id),
        ..message(i)
    }
}

/// Message `i`, after message `i - 1`: ids sort by `i`, as the time-ordered ids the engine
/// makes do.
fn message(i: usize) -> ChatMessage {
    ChatMessage {
        message_id: id(i),
        parent_id: i.checked_sub(1).map(id),
        siblings: Vec::new(),
        attachments: Vec::new(),
        role: if i.is_multiple_of(2) {
            MessageRole::User
        } else {
            MessageRole::Assistant
        },
        content: format!("message {i}"),
        user_id: i.is_multiple_of(2).then(|| user("alice")),
        created_at: 1_700_000_000_000 + i as u64,
        // Some answers hold reasoning and tool calls too: their parts must come back as they
        // went in.
        parts: if i % 4 == 1 {
            vec![
                MessagePart::Reasoning {
                    content: format!("thinking about {i}"),
                    signature: Some(format!("sig-{i}")),
                },
                MessagePart::ToolCall {
                    tool_call_id: format!("call_{i}"),
                    name: "calculate".into(),
                    arguments: serde_json::json!({"expression": format!("{i}*2")}),
                },
                MessagePart::ToolResult {
                    tool_call_id: format!("call_{i}"),
                    name: "calculate".into(),
                    output: Some(serde_json::json!({"value": i * 2})),
                    error: None,
                },
                MessagePart::Text {
                    content: format!("message {i}"),
                },
            ]
        } else {
            Vec::new()
        },
        // Some answers were written by a named assistant: the name must come back too.
        assistant: (i % 4 == 3).then(|| format!("assistant-{i}")),
    }
}

/// A pending approval in conversation `c` for answer `s`.
fn approval(c: &str, s: &str) -> ApprovalRecord {
    ApprovalRecord {
        request: ToolApprovalRequest {
            client: Default::default(),
            conversation_id: conv(c),
            stream_id: stream(s),
            seq: 3,
            approval_id: ApprovalId::random(),
            tool_call_id: "call_1".into(),
            name: "send_email".into(),
            arguments: serde_json::json!({"to": "bob"}),
            expires_at: now_millis() + 60_000,
        },
        decision: None,
    }
}

fn decision(by: &str, approved: bool) -> ApprovalDecision {
    ApprovalDecision {
        output: Default::default(),
        approved,
        decided_by: Some(user(by)),
        reason: (!approved).then(|| "not now".to_owned()),
        decided_at: now_millis(),
    }
}

fn ids(messages: &[ChatMessage]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m.message_id.as_str().to_owned())
        .collect()
}

fn ids_of(ids: &[MessageId]) -> Vec<String> {
    ids.iter().map(|m| m.as_str().to_owned()).collect()
}

fn expected(range: std::ops::Range<usize>) -> Vec<String> {
    range
        .map(|i| message(i).message_id.as_str().to_owned())
        .collect()
}

fn query(before: Option<usize>, limit: usize) -> HistoryQuery {
    HistoryQuery {
        before: before.map(|i| message(i).message_id),
        limit,
    }
}

type Store = Arc<dyn RoomStore>;

// ---------------------------------------------------------------------------------------
// The contract
// ---------------------------------------------------------------------------------------

mod contract {
    use super::*;

    pub async fn a_conversation_is_created_once(store: Store) {
        let c = conv("c1");
        assert_eq!(store.conversation(&c).await.unwrap(), None);
        assert!(
            store
                .create_conversation(info("c1", "alice"))
                .await
                .unwrap()
        );
        assert!(!store.create_conversation(info("c1", "bob")).await.unwrap());
        assert_eq!(
            store.conversation(&c).await.unwrap(),
            Some(info("c1", "alice")),
            "the second create changed nothing"
        );
        assert_eq!(store.members(&c).await.unwrap(), vec![user("alice")]);
    }

    pub async fn access_is_for_creator_and_invitees_in_order(store: Store) {
        let c = conv("c2");
        store
            .create_conversation(info("c2", "alice"))
            .await
            .unwrap();
        assert!(store.has_access(&c, &user("alice")).await.unwrap());
        assert!(!store.has_access(&c, &user("bob")).await.unwrap());
        for u in ["bob", "carol", "bob", "alice"] {
            store.grant_access(&c, &user(u)).await.unwrap();
        }
        assert!(store.has_access(&c, &user("bob")).await.unwrap());
        assert_eq!(
            store.members(&c).await.unwrap(),
            vec![user("alice"), user("bob"), user("carol")],
            "creator first, then invitees in order, each once"
        );

        let unknown = conv("nope");
        assert!(!store.has_access(&unknown, &user("alice")).await.unwrap());
        assert!(store.members(&unknown).await.unwrap().is_empty());
        // A change to a conversation the store does not hold is `NotFound`, by its variant:
        // the engine answers `not_found`, and nothing is recognised by its text.
        assert!(matches!(
            store.grant_access(&unknown, &user("bob")).await,
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            store.append_message(&unknown, message(0)).await,
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(store.conversation(&unknown).await.unwrap(), None);
    }

    pub async fn a_users_list_is_ordered_by_activity_and_paged(store: Store) {
        let t = 1_700_000_000_000;
        for i in 1..=5 {
            let id = format!("list-{i}");
            assert!(
                store
                    .create_conversation(info_at(&id, "alice", t + i))
                    .await
                    .unwrap()
            );
        }
        // A message in list-2 makes it the most recently active.
        store
            .touch(&conv("list-2"), &said(t + 100, "hello there"))
            .await
            .unwrap();
        // A message older than its activity changes the preview, not the order.
        store.touch(&conv("list-4"), &said(t, "old")).await.unwrap();
        let alice = user("alice");
        let first = store
            .list_conversations(&alice, &list_query(2))
            .await
            .unwrap();
        assert_eq!(listed(&first), ["list-2", "list-5"]);
        let last = first.conversations[0].info.last_message.clone().unwrap();
        assert_eq!(
            (last.preview.as_str(), last.created_at),
            ("hello there", t + 100)
        );
        assert_eq!(first.conversations[0].info.updated_at, t + 100);
        let second = store
            .list_conversations(
                &alice,
                &ListQuery {
                    before: first.next_before.clone(),
                    ..list_query(2)
                },
            )
            .await
            .unwrap();
        assert_eq!(listed(&second), ["list-4", "list-3"]);
        assert_eq!(
            second.conversations[0].info.updated_at,
            t + 4,
            "never goes back"
        );
        let third = store
            .list_conversations(
                &alice,
                &ListQuery {
                    before: second.next_before.clone(),
                    ..list_query(2)
                },
            )
            .await
            .unwrap();
        assert_eq!(listed(&third), ["list-1"]);
        assert_eq!(third.next_before, None, "the last page says so");
        let all = store
            .list_conversations(&alice, &list_query(100))
            .await
            .unwrap();
        assert_eq!(all.conversations.len(), 5);
        assert_eq!(all.next_before, None);

        // A user's list holds what they may enter, no more.
        let bob = user("bob");
        assert!(
            store
                .list_conversations(&bob, &list_query(10))
                .await
                .unwrap()
                .conversations
                .is_empty()
        );
        store.grant_access(&conv("list-3"), &bob).await.unwrap();
        assert_eq!(
            listed(
                &store
                    .list_conversations(&bob, &list_query(10))
                    .await
                    .unwrap()
            ),
            ["list-3"]
        );
        // Activity moves it up every member's list.
        store
            .touch(&conv("list-3"), &said(t + 200, "for bob"))
            .await
            .unwrap();
        assert_eq!(
            listed(
                &store
                    .list_conversations(&alice, &list_query(1))
                    .await
                    .unwrap()
            ),
            ["list-3"]
        );
    }

    pub async fn titles_and_settings_change_and_are_searched(store: Store) {
        let t = 1_700_000_000_000;
        for (i, id) in ["s-1", "s-2", "s-3"].iter().enumerate() {
            store
                .create_conversation(info_at(id, "alice", t + i as u64))
                .await
                .unwrap();
        }
        let named = store
            .update_conversation(
                &conv("s-1"),
                &ConversationChange {
                    title: Some("Trip PLANS for May".into()),
                    model: Some("big-model".into()),
                    system_prompt: Some("Answer in French".into()),
                    answer_policy: None,
                },
                t + 50,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(named.title.as_deref(), Some("Trip PLANS for May"));
        assert_eq!(named.model.as_deref(), Some("big-model"));
        assert_eq!(named.updated_at, t + 50, "a change is activity");
        assert_eq!(
            store.conversation(&conv("s-1")).await.unwrap(),
            Some(named.clone())
        );
        store
            .update_conversation(
                &conv("s-2"),
                &ConversationChange {
                    title: Some("Plain talk".into()),
                    ..Default::default()
                },
                t + 10,
            )
            .await
            .unwrap();
        let found = store
            .list_conversations(
                &user("alice"),
                &ListQuery {
                    query: Some("plans".into()),
                    ..list_query(10)
                },
            )
            .await
            .unwrap();
        assert_eq!(
            listed(&found),
            ["s-1"],
            "case-insensitive, titles that hold it"
        );
        let wildcard = store
            .list_conversations(
                &user("alice"),
                &ListQuery {
                    query: Some("%".into()),
                    ..list_query(10)
                },
            )
            .await
            .unwrap();
        assert!(
            wildcard.conversations.is_empty(),
            "a query is text, not a pattern"
        );
        // An empty setting clears it; what is not named is kept.
        let cleared = store
            .update_conversation(
                &conv("s-1"),
                &ConversationChange {
                    model: Some(String::new()),
                    ..Default::default()
                },
                t + 5,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(cleared.model, None);
        assert_eq!(cleared.system_prompt.as_deref(), Some("Answer in French"));
        assert_eq!(cleared.updated_at, t + 50);
        assert_eq!(
            store
                .update_conversation(&conv("nope"), &ConversationChange::default(), t)
                .await
                .unwrap(),
            None
        );
    }

    pub async fn the_archive_is_each_users_own(store: Store) {
        let t = 1_700_000_000_000;
        store
            .create_conversation(info_at("a-1", "alice", t))
            .await
            .unwrap();
        store
            .create_conversation(info_at("a-2", "alice", t + 1))
            .await
            .unwrap();
        store
            .grant_access(&conv("a-1"), &user("bob"))
            .await
            .unwrap();
        assert!(
            store
                .set_archived(&conv("a-1"), &user("alice"), true)
                .await
                .unwrap()
        );
        let alice = user("alice");
        let archived = ListQuery {
            archived: true,
            ..list_query(10)
        };
        assert_eq!(
            listed(
                &store
                    .list_conversations(&alice, &list_query(10))
                    .await
                    .unwrap()
            ),
            ["a-2"]
        );
        let page = store.list_conversations(&alice, &archived).await.unwrap();
        assert_eq!(listed(&page), ["a-1"]);
        assert!(page.conversations[0].archived);
        assert!(store.is_archived(&conv("a-1"), &alice).await.unwrap());
        assert!(!store.is_archived(&conv("a-1"), &user("bob")).await.unwrap());
        assert!(!store.is_archived(&conv("a-2"), &alice).await.unwrap());
        assert_eq!(
            listed(
                &store
                    .list_conversations(&user("bob"), &list_query(10))
                    .await
                    .unwrap()
            ),
            ["a-1"],
            "bob's list is his"
        );
        // Activity moves it within the archive, not out of it.
        store
            .touch(&conv("a-1"), &said(t + 9, "still here"))
            .await
            .unwrap();
        assert_eq!(
            listed(&store.list_conversations(&alice, &archived).await.unwrap()),
            ["a-1"]
        );
        assert!(
            store
                .set_archived(&conv("a-1"), &alice, false)
                .await
                .unwrap()
        );
        assert!(!store.is_archived(&conv("a-1"), &alice).await.unwrap());
        assert_eq!(
            listed(
                &store
                    .list_conversations(&alice, &list_query(10))
                    .await
                    .unwrap()
            ),
            ["a-1", "a-2"]
        );
        assert!(
            !store
                .set_archived(&conv("a-1"), &user("carol"), true)
                .await
                .unwrap(),
            "no member"
        );
    }

    pub async fn a_removed_member_loses_access_and_the_list_entry(store: Store) {
        store
            .create_conversation(info("r-1", "alice"))
            .await
            .unwrap();
        for u in ["bob", "carol"] {
            store.grant_access(&conv("r-1"), &user(u)).await.unwrap();
        }
        assert!(
            store
                .remove_member(&conv("r-1"), &user("bob"))
                .await
                .unwrap()
        );
        assert!(!store.has_access(&conv("r-1"), &user("bob")).await.unwrap());
        assert_eq!(
            store.members(&conv("r-1")).await.unwrap(),
            [user("alice"), user("carol")]
        );
        assert!(
            store
                .list_conversations(&user("bob"), &list_query(10))
                .await
                .unwrap()
                .conversations
                .is_empty()
        );
        assert!(
            !store
                .remove_member(&conv("r-1"), &user("bob"))
                .await
                .unwrap(),
            "once"
        );
        assert!(
            !store
                .remove_member(&conv("r-1"), &user("alice"))
                .await
                .unwrap(),
            "not the creator"
        );
        // Let in again, after the others.
        store
            .grant_access(&conv("r-1"), &user("bob"))
            .await
            .unwrap();
        assert_eq!(
            store.members(&conv("r-1")).await.unwrap(),
            [user("alice"), user("carol"), user("bob")]
        );
    }

    pub async fn a_deleted_conversation_is_gone_for_good(store: Store) {
        let c = conv("d-1");
        store
            .create_conversation(info("d-1", "alice"))
            .await
            .unwrap();
        store.grant_access(&c, &user("bob")).await.unwrap();
        for i in 0..3 {
            store.append_message(&c, message(i)).await.unwrap();
        }
        assert!(store.delete_conversation(&c).await.unwrap());
        store.delete_history(&c).await.unwrap();
        assert_eq!(store.conversation(&c).await.unwrap(), None);
        assert!(store.members(&c).await.unwrap().is_empty());
        assert!(!store.has_access(&c, &user("bob")).await.unwrap());
        assert!(store.history(&c, query(None, 50)).await.unwrap().is_empty());
        assert!(store.all_messages(&c).await.unwrap().is_empty());
        for u in ["alice", "bob"] {
            assert!(
                store
                    .list_conversations(&user(u), &list_query(10))
                    .await
                    .unwrap()
                    .conversations
                    .is_empty()
            );
        }
        assert!(
            !store
                .create_conversation(info("d-1", "carol"))
                .await
                .unwrap(),
            "the id is never used again"
        );
        assert_eq!(store.conversation(&c).await.unwrap(), None);
        assert!(!store.delete_conversation(&c).await.unwrap());
        assert!(matches!(
            store.grant_access(&c, &user("carol")).await,
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            store.append_message(&c, message(9)).await,
            Err(StoreError::NotFound(_))
        ));
        // Another conversation is untouched.
        store
            .create_conversation(info("d-2", "alice"))
            .await
            .unwrap();
        assert_eq!(
            listed(
                &store
                    .list_conversations(&user("alice"), &list_query(10))
                    .await
                    .unwrap()
            ),
            ["d-2"]
        );
    }

    pub async fn history_pages_back_from_a_cursor(store: Store) {
        let c = conv("c3");
        store
            .create_conversation(info("c3", "alice"))
            .await
            .unwrap();
        assert!(store.history(&c, query(None, 50)).await.unwrap().is_empty());
        for i in 0..7 {
            store.append_message(&c, message(i)).await.unwrap();
        }
        let all = store.history(&c, query(None, 50)).await.unwrap();
        assert_eq!(ids(&all), expected(0..7), "oldest first");
        assert_eq!(all[2], message(2), "every field round-trips");
        assert_eq!(all[3], message(3));

        // What the model is given: the same newest messages, role and text only.
        let prompt = store
            .prompt_history(&c, HistoryQuery::newest(3))
            .await
            .unwrap();
        let want: Vec<_> = all[4..]
            .iter()
            .map(|m| (m.role, m.content.clone()))
            .collect();
        let got: Vec<_> = prompt.into_iter().map(|p| (p.role, p.content)).collect();
        assert_eq!(got, want);
        assert_eq!(
            store
                .prompt_history(&c, HistoryQuery::newest(50))
                .await
                .unwrap()
                .len(),
            7
        );
        assert!(
            store
                .prompt_history(&conv("never-created"), HistoryQuery::newest(5))
                .await
                .unwrap()
                .is_empty()
        );

        assert_eq!(
            ids(&store.history(&c, query(None, 3)).await.unwrap()),
            expected(4..7),
            "the newest `limit`, oldest first"
        );
        assert_eq!(
            ids(&store.history(&c, query(Some(5), 2)).await.unwrap()),
            expected(3..5),
            "strictly before the cursor"
        );
        assert_eq!(
            ids(&store.history(&c, query(Some(5), 50)).await.unwrap()),
            expected(0..5)
        );
        assert!(
            store
                .history(&c, query(Some(0), 50))
                .await
                .unwrap()
                .is_empty()
        );
        assert!(store.history(&c, query(None, 0)).await.unwrap().is_empty());

        // Walking back page by page visits every message once.
        let mut seen = Vec::new();
        let mut before = None;
        loop {
            let page = store
                .history(&c, HistoryQuery { before, limit: 2 })
                .await
                .unwrap();
            if page.is_empty() {
                break;
            }
            before = Some(page[0].message_id.clone());
            seen.splice(0..0, ids(&page));
        }
        assert_eq!(seen, expected(0..7));

        // A cursor that is not a stored id still cuts by id order.
        let between = HistoryQuery {
            before: Some(MessageId::parse("m00003x").unwrap()),
            limit: 50,
        };
        assert_eq!(
            ids(&store.history(&c, between).await.unwrap()),
            expected(0..4)
        );

        let unknown = conv("nope");
        assert!(
            store
                .history(&unknown, query(None, 50))
                .await
                .unwrap()
                .is_empty()
        );
        assert!(store.append_message(&unknown, message(0)).await.is_err());
    }

    pub async fn message_content_round_trips(store: Store) {
        let c = conv("c4");
        store
            .create_conversation(info("c4", "alice"))
            .await
            .unwrap();
        let tricky = ChatMessage {
            message_id: MessageId::parse("m1").unwrap(),
            role: MessageRole::User,
            content: "quotes \" ' backslash \\ newline \n emoji 🦀 nul-free {braces} '('".into(),
            user_id: Some(user("alice@example.com")),
            created_at: u64::MAX / 2,
            parts: Vec::new(),
            parent_id: None,
            siblings: Vec::new(),
            attachments: Vec::new(),
            assistant: None,
        };
        store.append_message(&c, tricky.clone()).await.unwrap();
        assert_eq!(
            store.history(&c, query(None, 10)).await.unwrap(),
            vec![tricky]
        );
    }

    /// Twenty answers to one question at once (regenerated on several nodes, say): all kept,
    /// all siblings, and the active branch ends at one of them.
    pub async fn concurrent_appends_are_all_kept(store: Store) {
        let c = conv("c5");
        store
            .create_conversation(info("c5", "alice"))
            .await
            .unwrap();
        store.append_message(&c, message(0)).await.unwrap();
        let tasks: Vec<_> = (1..=20)
            .map(|i| {
                let (store, c) = (store.clone(), c.clone());
                tokio::spawn(
                    async move { store.append_message(&c, message_after(i, Some(0))).await },
                )
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let history = store.history(&c, query(None, 100)).await.unwrap();
        assert_eq!(history.len(), 2, "the first message and one answer");
        assert_eq!(history[0].message_id, id(0));
        let mut siblings = ids_of(&history[1].siblings);
        siblings.sort();
        assert_eq!(siblings, expected(1..21), "every answer is a sibling");
        assert!(history[1].siblings.contains(&history[1].message_id));
        assert_eq!(
            store.active_leaf(&c).await.unwrap(),
            Some(history[1].message_id.clone())
        );
    }

    /// `append_to_active` puts a message after the active branch's leaf, whatever its
    /// `parent_id` says, and returns it as stored.
    pub async fn appends_go_after_the_active_leaf(store: Store) {
        let c = conv("c10");
        store
            .create_conversation(info("c10", "alice"))
            .await
            .unwrap();
        // A parent the conversation does not have is not where it goes.
        let first = store
            .append_to_active(&c, message_after(0, Some(99)))
            .await
            .unwrap();
        assert_eq!(first, message_after(0, None), "returned as stored");
        assert_eq!(store.active_leaf(&c).await.unwrap(), Some(id(0)));
        let second = store
            .append_to_active(&c, message_after(1, None))
            .await
            .unwrap();
        assert_eq!(second, message_after(1, Some(0)));
        let history = store.history(&c, query(None, 10)).await.unwrap();
        assert_eq!(
            history,
            vec![message_after(0, None), message_after(1, Some(0))]
        );
        assert_eq!(store.active_leaf(&c).await.unwrap(), Some(id(1)));
        assert!(matches!(
            store
                .append_to_active(&conv("never-created"), message(0))
                .await,
            Err(StoreError::NotFound(_))
        ));
    }

    /// People posting in a group at once: twenty `append_to_active`s at the same time follow
    /// each other on the active branch, none a sibling of another.
    pub async fn concurrent_appends_to_the_active_leaf_follow_each_other(store: Store) {
        let c = conv("c11");
        store
            .create_conversation(info("c11", "alice"))
            .await
            .unwrap();
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let (store, c) = (store.clone(), c.clone());
                // Every one of them thinks it follows the same message.
                tokio::spawn(
                    async move { store.append_to_active(&c, message_after(i, Some(0))).await },
                )
            })
            .collect();
        let mut returned = Vec::new();
        for t in tasks {
            returned.push(t.await.unwrap().unwrap());
        }
        let history = store.history(&c, query(None, 100)).await.unwrap();
        let mut on_branch = ids(&history);
        on_branch.sort();
        assert_eq!(
            on_branch,
            expected(0..20),
            "all twenty on the active branch"
        );
        assert_eq!(history[0].parent_id, None);
        for pair in history.windows(2) {
            assert_eq!(pair[1].parent_id.as_ref(), Some(&pair[0].message_id));
        }
        assert!(history.iter().all(|m| m.siblings.is_empty()), "no siblings");
        for stored in &returned {
            let at = history
                .iter()
                .find(|m| m.message_id == stored.message_id)
                .unwrap();
            assert_eq!(stored.parent_id, at.parent_id, "returned with its parent");
        }
        assert_eq!(store.all_messages(&c).await.unwrap().len(), 20);
        assert_eq!(
            store.active_leaf(&c).await.unwrap().as_ref(),
            history.last().map(|m| &m.message_id)
        );
    }

    /// After a switch, `append_to_active` goes after the new active leaf; a message already
    /// held is replaced where it is.
    pub async fn appends_to_the_active_leaf_follow_a_switch(store: Store) {
        let c = conv("c12");
        store
            .create_conversation(info("c12", "alice"))
            .await
            .unwrap();
        for i in 0..4 {
            store.append_message(&c, message(i)).await.unwrap();
        }
        // m2 edited: m10 beside it, the active branch 0, 1, 10.
        store
            .append_message(&c, message_after(10, Some(1)))
            .await
            .unwrap();
        assert_eq!(store.switch_branch(&c, &id(2)).await.unwrap(), Some(id(3)));
        let stored = store
            .append_to_active(&c, message_after(11, Some(10)))
            .await
            .unwrap();
        assert_eq!(stored.parent_id, Some(id(3)));
        let history = store.history(&c, query(None, 50)).await.unwrap();
        assert_eq!(ids(&history), ids_of(&[0, 1, 2, 3, 11].map(id)));
        assert_eq!(history[4], message_after(11, Some(3)));

        // Back to the edit: after it.
        assert_eq!(
            store.switch_branch(&c, &id(10)).await.unwrap(),
            Some(id(10))
        );
        let stored = store
            .append_to_active(&c, message_after(12, None))
            .await
            .unwrap();
        assert_eq!(stored.parent_id, Some(id(10)));
        let history = store.history(&c, query(None, 50)).await.unwrap();
        assert_eq!(ids(&history), ids_of(&[0, 1, 10, 12].map(id)));
        assert!(history[3].siblings.is_empty());

        // A message already held (m3, off the active branch) is replaced where it is: its
        // parent kept, the active branch unchanged.
        let edited = ChatMessage {
            content: "message 3, again".into(),
            ..message_after(3, Some(12))
        };
        let stored = store.append_to_active(&c, edited).await.unwrap();
        assert_eq!(stored.parent_id, Some(id(2)));
        assert_eq!(
            store.message(&c, &id(3)).await.unwrap().unwrap(),
            ChatMessage {
                content: "message 3, again".into(),
                ..message(3)
            }
        );
        assert_eq!(store.active_leaf(&c).await.unwrap(), Some(id(12)));
        assert_eq!(
            ids(&store.history(&c, query(None, 50)).await.unwrap()),
            ids_of(&[0, 1, 10, 12].map(id))
        );
    }

    /// Edits and regenerated answers are siblings; nothing is deleted; one branch is active,
    /// and switching moves it down to the newest leaf.
    pub async fn branches_keep_every_message_and_one_active_path(store: Store) {
        let c = conv("c6");
        store
            .create_conversation(info("c6", "alice"))
            .await
            .unwrap();
        store
            .create_conversation(info("other", "alice"))
            .await
            .unwrap();
        for i in 0..4 {
            store.append_message(&c, message(i)).await.unwrap();
        }
        let branch = |ids: &[usize]| {
            ids.iter()
                .map(|&i| id(i).as_str().to_owned())
                .collect::<Vec<_>>()
        };
        let active = |store: Store| async move {
            ids(&store.history(&conv("c6"), query(None, 50)).await.unwrap())
        };

        // m2 edited: m10 beside it, then its answer m11.
        store
            .append_message(&c, message_after(10, Some(1)))
            .await
            .unwrap();
        let history = store.history(&c, query(None, 50)).await.unwrap();
        assert_eq!(ids(&history), branch(&[0, 1, 10]));
        assert_eq!(history[2].parent_id, Some(id(1)));
        assert_eq!(
            ids_of(&history[2].siblings),
            branch(&[2, 10]),
            "oldest first"
        );
        assert!(history[0].siblings.is_empty() && history[1].siblings.is_empty());
        assert_eq!(store.active_leaf(&c).await.unwrap(), Some(id(10)));
        store
            .append_message(&c, message_after(11, Some(10)))
            .await
            .unwrap();
        assert_eq!(active(store.clone()).await, branch(&[0, 1, 10, 11]));

        // Every message is still there, on any branch.
        let off_branch = store.message(&c, &id(3)).await.unwrap().unwrap();
        assert_eq!(off_branch, message(3));
        assert_eq!(store.message(&c, &id(99)).await.unwrap(), None);
        assert_eq!(
            store.message(&conv("other"), &id(3)).await.unwrap(),
            None,
            "a message of another conversation is not found"
        );

        // Back to the first question: down to its newest leaf.
        assert_eq!(store.switch_branch(&c, &id(2)).await.unwrap(), Some(id(3)));
        let history = store.history(&c, query(None, 50)).await.unwrap();
        assert_eq!(ids(&history), branch(&[0, 1, 2, 3]));
        assert_eq!(ids_of(&history[2].siblings), branch(&[2, 10]));
        assert_eq!(store.active_leaf(&c).await.unwrap(), Some(id(3)));

        // m3 regenerated: m12 beside it.
        store
            .append_message(&c, message_after(12, Some(2)))
            .await
            .unwrap();
        let history = store.history(&c, query(None, 50)).await.unwrap();
        assert_eq!(ids(&history), branch(&[0, 1, 2, 12]));
        assert_eq!(ids_of(&history[3].siblings), branch(&[3, 12]));

        // A switch to a message on a branch follows its newest children.
        assert_eq!(store.switch_branch(&c, &id(1)).await.unwrap(), Some(id(11)));
        assert_eq!(active(store.clone()).await, branch(&[0, 1, 10, 11]));
        assert_eq!(store.switch_branch(&c, &id(0)).await.unwrap(), Some(id(11)));
        assert_eq!(store.switch_branch(&c, &id(3)).await.unwrap(), Some(id(3)));
        assert_eq!(active(store.clone()).await, branch(&[0, 1, 2, 3]));

        // Unknown messages, or another conversation's, change nothing.
        assert_eq!(store.switch_branch(&c, &id(99)).await.unwrap(), None);
        assert_eq!(
            store.switch_branch(&conv("other"), &id(2)).await.unwrap(),
            None
        );
        assert_eq!(
            store
                .switch_branch(&conv("never-created"), &id(2))
                .await
                .unwrap(),
            None
        );
        assert_eq!(active(store.clone()).await, branch(&[0, 1, 2, 3]));

        // Pages and prompts follow the active branch.
        assert_eq!(
            ids(&store.history(&c, query(Some(3), 2)).await.unwrap()),
            branch(&[1, 2])
        );
        store.switch_branch(&c, &id(11)).await.unwrap();
        assert_eq!(
            ids(&store.history(&c, query(Some(10), 50)).await.unwrap()),
            branch(&[0, 1]),
            "before a message of the active branch: its ancestors"
        );
        let prompt = store
            .prompt_history(
                &c,
                HistoryQuery {
                    before: Some(id(11)),
                    limit: 50,
                },
            )
            .await
            .unwrap();
        let contents: Vec<_> = prompt.into_iter().map(|p| p.content).collect();
        assert_eq!(contents, ["message 0", "message 1", "message 10"]);
        assert_eq!(store.active_leaf(&conv("other")).await.unwrap(), None);

        // The export: every branch, in the order stored, each message as it was appended.
        let all = store.all_messages(&c).await.unwrap();
        assert_eq!(ids(&all), branch(&[0, 1, 2, 3, 10, 11, 12]));
        assert_eq!(all[4], message_after(10, Some(1)));
        assert_eq!(all[6], message_after(12, Some(2)));
        assert_eq!(all[3], message(3));
        assert!(all.iter().all(|m| m.siblings.is_empty()));
        assert!(store.all_messages(&conv("other")).await.unwrap().is_empty());
        assert!(
            store
                .all_messages(&conv("never-created"))
                .await
                .unwrap()
                .is_empty()
        );
    }

    /// Sends wait in order, at most `max`; each is queued once and taken out once.
    pub async fn queued_sends_wait_in_order_up_to_max(store: Store) {
        let c = conv("c7");
        let send = |i: usize| QueuedSend {
            client_tools: Default::default(),
            conversation_id: c.clone(),
            user_id: user("alice"),
            roles: if i == 2 {
                vec!["admin".into()]
            } else {
                Vec::new()
            },
            message: format!("queued {i} \"quoted\" 🦀"),
            attachments: Vec::new(),
            stream: i != 3,
            message_id: id(100 + i),
            answer_message_id: id(200 + i),
            stream_id: stream(&format!("q{i}")),
            queued_at: 1_700_000_000_000 + i as u64,
        };
        assert!(store.queued_sends(&c).await.unwrap().is_empty());
        for i in 1..=3 {
            assert_eq!(store.enqueue_send(&send(i), 3).await.unwrap(), Some(i));
        }
        assert_eq!(
            store.enqueue_send(&send(2), 3).await.unwrap(),
            Some(2),
            "a send already queued keeps its place"
        );
        assert_eq!(
            store.enqueue_send(&send(4), 3).await.unwrap(),
            None,
            "the queue is full"
        );
        assert_eq!(
            store.queued_sends(&c).await.unwrap(),
            vec![send(1), send(2), send(3)]
        );
        assert!(store.remove_queued(&c, &stream("q2")).await.unwrap());
        assert!(!store.remove_queued(&c, &stream("q2")).await.unwrap());
        assert!(
            !store
                .remove_queued(&conv("other"), &stream("q1"))
                .await
                .unwrap()
        );
        assert_eq!(store.enqueue_send(&send(4), 3).await.unwrap(), Some(3));
        assert_eq!(
            store.queued_sends(&c).await.unwrap(),
            vec![send(1), send(3), send(4)]
        );

        // Several nodes taking the same send: one gets it.
        let takers: Vec<_> = (0..8)
            .map(|_| {
                let (store, c) = (store.clone(), c.clone());
                tokio::spawn(async move { store.remove_queued(&c, &stream("q1")).await.unwrap() })
            })
            .collect();
        let mut won = 0;
        for t in takers {
            won += usize::from(t.await.unwrap());
        }
        assert_eq!(won, 1);
        assert_eq!(
            store.queued_sends(&c).await.unwrap(),
            vec![send(3), send(4)]
        );
        assert!(store.queued_sends(&conv("other")).await.unwrap().is_empty());
    }

    /// Usage adds up per user and window, every concurrent add counted once.
    pub async fn usage_adds_up_per_user_and_window(store: Store) {
        let now = now_millis();
        let day = BudgetPeriod::Day.window(now);
        let hour = BudgetPeriod::Hour.window(now);
        let alice = user("alice");
        assert_eq!(store.usage(&alice, day).await.unwrap(), 0);
        let adds: Vec<_> = (1..=20u64)
            .map(|i| {
                let (store, alice) = (store.clone(), alice.clone());
                tokio::spawn(async move { store.add_usage(&alice, day, i).await.unwrap() })
            })
            .collect();
        let mut totals = Vec::new();
        for add in adds {
            totals.push(add.await.unwrap());
        }
        totals.sort_unstable();
        totals.dedup();
        assert_eq!(totals.len(), 20, "each add saw its own total");
        assert_eq!(store.usage(&alice, day).await.unwrap(), 210);
        assert_eq!(
            store.usage(&alice, hour).await.unwrap(),
            0,
            "another window"
        );
        assert_eq!(store.usage(&user("bob"), day).await.unwrap(), 0);
        assert_eq!(store.add_usage(&user("bob"), day, 0).await.unwrap(), 0);
        assert_eq!(store.add_usage(&alice, hour, 5).await.unwrap(), 5);
        assert_eq!(store.usage(&alice, day).await.unwrap(), 210);
    }

    pub async fn sessions_expire_and_can_be_removed(store: Store) {
        let id = SessionId::random();
        let record = SessionRecord {
            session_id: id.clone(),
            user_id: user("alice"),
            rooms: vec![conv("a"), conv("b")],
            expires_at: now_millis() + 60_000,
        };
        assert_eq!(store.session(&id).await.unwrap(), None);
        store.put_session(record.clone()).await.unwrap();
        assert_eq!(store.session(&id).await.unwrap(), Some(record.clone()));

        let replaced = SessionRecord {
            rooms: vec![conv("c")],
            ..record.clone()
        };
        store.put_session(replaced.clone()).await.unwrap();
        assert_eq!(store.session(&id).await.unwrap(), Some(replaced));

        let other = SessionId::random();
        store
            .put_session(SessionRecord {
                session_id: other.clone(),
                ..record.clone()
            })
            .await
            .unwrap();
        store.remove_session(&id).await.unwrap();
        assert_eq!(store.session(&id).await.unwrap(), None);
        assert!(store.session(&other).await.unwrap().is_some());

        let expired = SessionRecord {
            session_id: SessionId::random(),
            expires_at: now_millis().saturating_sub(1),
            ..record
        };
        store.put_session(expired.clone()).await.unwrap();
        assert_eq!(store.session(&expired.session_id).await.unwrap(), None);
    }

    pub async fn one_answer_holds_a_conversation(store: Store) {
        let c = conv("c6");
        let ttl = Duration::from_secs(60);
        let (s1, s2) = (stream("s1"), stream("s2"));
        assert_eq!(store.active_answer(&c).await.unwrap(), None);
        assert!(store.claim_answer(&c, &s1, ttl).await.unwrap());
        assert!(!store.claim_answer(&c, &s2, ttl).await.unwrap());
        assert!(
            !store.claim_answer(&c, &s1, ttl).await.unwrap(),
            "no re-entry"
        );
        assert_eq!(
            store.active_answer(&c).await.unwrap(),
            Some(AnswerLease {
                stream_id: s1.clone(),
                seq: 0,
            })
        );

        let at5 = AnswerLease {
            stream_id: s1.clone(),
            seq: 5,
        };
        assert!(store.renew_answer(&c, &at5, ttl).await.unwrap());
        assert_eq!(store.active_answer(&c).await.unwrap(), Some(at5));
        let intruder = AnswerLease {
            stream_id: s2.clone(),
            seq: 9,
        };
        assert!(!store.renew_answer(&c, &intruder, ttl).await.unwrap());

        store.release_answer(&c, &s2).await.unwrap();
        assert_eq!(
            store.active_answer(&c).await.unwrap().map(|a| a.stream_id),
            Some(s1.clone()),
            "only the holder releases"
        );
        store.release_answer(&c, &s1).await.unwrap();
        assert_eq!(store.active_answer(&c).await.unwrap(), None);
        store.release_answer(&c, &s1).await.unwrap();

        assert!(store.claim_answer(&c, &s2, ttl).await.unwrap());
        // Leases are per conversation.
        assert!(store.claim_answer(&conv("c6b"), &s1, ttl).await.unwrap());
    }

    pub async fn a_lease_lapses_unless_renewed(store: Store) {
        let c = conv("c7");
        let short = Duration::from_millis(150);
        assert!(
            store
                .claim_answer(&c, &stream("dead"), short)
                .await
                .unwrap()
        );
        // The node that claimed it "died": nothing renews. Wait, bounded, for the lapse.
        let deadline = tokio::time::Instant::now() + WAIT;
        while store.active_answer(&c).await.unwrap().is_some() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the lease never lapsed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            store
                .claim_answer(&c, &stream("next"), Duration::from_secs(60))
                .await
                .unwrap()
        );

        // A renewal after a lapse takes the free lease again.
        let d = conv("c7b");
        assert!(
            store
                .claim_answer(&d, &stream("slow"), short)
                .await
                .unwrap()
        );
        let deadline = tokio::time::Instant::now() + WAIT;
        while store.active_answer(&d).await.unwrap().is_some() {
            assert!(tokio::time::Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let slow = AnswerLease {
            stream_id: stream("slow"),
            seq: 3,
        };
        assert!(
            store
                .renew_answer(&d, &slow, Duration::from_secs(60))
                .await
                .unwrap()
        );
        assert_eq!(store.active_answer(&d).await.unwrap(), Some(slow));
    }

    pub async fn concurrent_claims_have_one_winner(store: Store) {
        let c = conv("c8");
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let (store, c) = (store.clone(), c.clone());
                tokio::spawn(async move {
                    store
                        .claim_answer(&c, &stream(&format!("s{i}")), Duration::from_secs(60))
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut winners = 0;
        for t in tasks {
            winners += usize::from(t.await.unwrap());
        }
        assert_eq!(winners, 1);
    }

    pub async fn an_approval_is_decided_once(store: Store) {
        let pending = approval("c9", "s1");
        let id = pending.request.approval_id.clone();
        assert_eq!(store.approval(&id).await.unwrap(), None);
        assert_eq!(store.pending_approval(&conv("c9")).await.unwrap(), None);
        store.create_approval(&pending).await.unwrap();
        assert_eq!(store.approval(&id).await.unwrap(), Some(pending.clone()));
        assert_eq!(
            store.pending_approval(&conv("c9")).await.unwrap(),
            Some(pending.clone())
        );
        assert_eq!(store.pending_approval(&conv("c9b")).await.unwrap(), None);

        let bob = decision("bob", false);
        let ApprovalOutcome::Decided(decided) = store.decide_approval(&id, &bob).await.unwrap()
        else {
            panic!("the first decision must win");
        };
        assert_eq!(decided.decision.as_ref(), Some(&bob));
        assert_eq!(decided.request, pending.request);
        // The second one changes nothing and learns the first.
        let ApprovalOutcome::AlreadyDecided(first) = store
            .decide_approval(&id, &decision("carol", true))
            .await
            .unwrap()
        else {
            panic!("a second decision must not win");
        };
        assert_eq!(first.decision, Some(bob.clone()));
        assert_eq!(
            store.approval(&id).await.unwrap().unwrap().decision,
            Some(bob)
        );
        assert_eq!(store.pending_approval(&conv("c9")).await.unwrap(), None);

        assert_eq!(
            store
                .decide_approval(&ApprovalId::random(), &decision("bob", true))
                .await
                .unwrap(),
            ApprovalOutcome::NotFound
        );

        // A removed approval (its answer ended) is gone for everyone.
        let other = approval("c9", "s2");
        let other_id = other.request.approval_id.clone();
        store.create_approval(&other).await.unwrap();
        store.remove_approval(&other_id).await.unwrap();
        assert_eq!(store.approval(&other_id).await.unwrap(), None);
        assert_eq!(store.pending_approval(&conv("c9")).await.unwrap(), None);
        assert_eq!(
            store
                .decide_approval(&other_id, &decision("bob", true))
                .await
                .unwrap(),
            ApprovalOutcome::NotFound
        );
    }

    pub async fn a_client_calls_record_is_found_and_carries_its_output(store: Store) {
        // A client tool's call waits as an approval does, under an id derived from its
        // answer and its call (`ApprovalId::for_client_call`), which a store reads back.
        let mut pending = approval("c9c", "s1");
        pending.request.client = true;
        pending.request.approval_id =
            ApprovalId::for_client_call(&stream("s1"), "functions.get_time:0");
        let id = pending.request.approval_id.clone();
        store.create_approval(&pending).await.unwrap();
        assert_eq!(
            store.pending_approval(&conv("c9c")).await.unwrap(),
            Some(pending.clone())
        );
        let output = ApprovalDecision {
            output: Some(serde_json::json!({"time": "12:00"})),
            ..decision("bob", true)
        };
        let ApprovalOutcome::Decided(decided) = store.decide_approval(&id, &output).await.unwrap()
        else {
            panic!("the first result must win");
        };
        assert_eq!(decided.decision, Some(output.clone()));
        assert!(store.approval(&id).await.unwrap().unwrap().request.client);
        assert_eq!(
            store.approval(&id).await.unwrap().unwrap().decision,
            Some(output)
        );
    }

    pub async fn concurrent_decisions_have_one_winner(store: Store) {
        let pending = approval("c10", "s1");
        let id = pending.request.approval_id.clone();
        store.create_approval(&pending).await.unwrap();
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let (store, id) = (store.clone(), id.clone());
                tokio::spawn(async move {
                    store
                        .decide_approval(&id, &decision(&format!("u{i}"), i % 2 == 0))
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut winners = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                ApprovalOutcome::Decided(r) => winners.push(r.decision.unwrap()),
                ApprovalOutcome::AlreadyDecided(_) => {}
                ApprovalOutcome::NotFound => panic!("the approval vanished"),
            }
        }
        assert_eq!(winners.len(), 1);
        assert_eq!(
            store
                .approval(&id)
                .await
                .unwrap()
                .unwrap()
                .decision
                .as_ref(),
            winners.first()
        );
    }

    /// A conversation's answer policy is kept from its creation, changed by an update (and
    /// only by one that names it), and shown in its members' lists.
    pub async fn the_answer_policy_is_kept_and_changed(store: Store) {
        let t = 1_700_000_000_000;
        let alice = user("alice");
        store
            .create_conversation(info_at("p-1", "alice", t))
            .await
            .unwrap();
        let quiet = ConversationInfo {
            answer_policy: AnswerPolicy::Never,
            ..info_at("p-2", "alice", t + 1)
        };
        store.create_conversation(quiet.clone()).await.unwrap();
        assert_eq!(
            store
                .conversation(&conv("p-1"))
                .await
                .unwrap()
                .unwrap()
                .answer_policy,
            AnswerPolicy::Always,
            "the default"
        );
        assert_eq!(
            store.conversation(&conv("p-2")).await.unwrap(),
            Some(quiet),
            "as created"
        );

        let policy = |policy: AnswerPolicy| ConversationChange {
            answer_policy: Some(policy),
            ..ConversationChange::default()
        };
        let changed = store
            .update_conversation(&conv("p-1"), &policy(AnswerPolicy::Mention), t + 10)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(changed.answer_policy, AnswerPolicy::Mention);
        assert_eq!(changed.updated_at, t + 10, "a change is activity");
        assert_eq!(
            store.conversation(&conv("p-1")).await.unwrap(),
            Some(changed.clone())
        );
        let page = store
            .list_conversations(&alice, &list_query(10))
            .await
            .unwrap();
        assert_eq!(listed(&page), ["p-1", "p-2"]);
        let policies: Vec<_> = page
            .conversations
            .iter()
            .map(|c| c.info.answer_policy)
            .collect();
        assert_eq!(policies, [AnswerPolicy::Mention, AnswerPolicy::Never]);
        assert_eq!(page.conversations[0].info, changed);

        // A change that does not name it keeps it.
        let titled = store
            .update_conversation(
                &conv("p-1"),
                &ConversationChange {
                    title: Some("Group chat".into()),
                    ..ConversationChange::default()
                },
                t + 20,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(titled.answer_policy, AnswerPolicy::Mention);
        for next in [AnswerPolicy::Never, AnswerPolicy::Always] {
            let info = store
                .update_conversation(&conv("p-1"), &policy(next), t + 30)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(info.answer_policy, next);
            assert_eq!(store.conversation(&conv("p-1")).await.unwrap(), Some(info));
        }
    }

    /// The name of the assistant that wrote an answer comes back from every read: a page,
    /// one message, the export; and a message replaced in place takes its new one.
    pub async fn the_assistants_name_round_trips(store: Store) {
        let c = conv("as-1");
        store
            .create_conversation(info("as-1", "alice"))
            .await
            .unwrap();
        let named = |i: usize, name: Option<&str>| ChatMessage {
            assistant: name.map(str::to_owned),
            ..message(i)
        };
        let sent = vec![
            named(0, None),
            named(1, Some("poet")),
            named(2, None),
            named(3, Some("Critic \"the\" 🦀")),
            named(4, None),
            named(5, None),
        ];
        for m in &sent {
            store.append_message(&c, m.clone()).await.unwrap();
        }
        let names = |messages: &[ChatMessage]| -> Vec<Option<String>> {
            messages.iter().map(|m| m.assistant.clone()).collect()
        };
        let history = store.history(&c, query(None, 50)).await.unwrap();
        assert_eq!(history, sent, "every field round-trips");
        assert_eq!(names(&store.all_messages(&c).await.unwrap()), names(&sent));
        assert_eq!(
            store.message(&c, &id(3)).await.unwrap(),
            Some(sent[3].clone())
        );
        let again = named(1, Some("muse"));
        store.append_message(&c, again.clone()).await.unwrap();
        assert_eq!(store.message(&c, &id(1)).await.unwrap(), Some(again));
        let renamed = named(3, None);
        store.append_message(&c, renamed.clone()).await.unwrap();
        assert_eq!(store.message(&c, &id(3)).await.unwrap(), Some(renamed));
        assert_eq!(
            names(&store.history(&c, query(None, 50)).await.unwrap()),
            [None, Some("muse".into()), None, None, None, None]
        );
    }

    /// What the model is given names the author of each user message, and no one else.
    pub async fn prompts_name_the_authors_of_user_messages(store: Store) {
        let c = conv("au-1");
        store
            .create_conversation(info("au-1", "alice"))
            .await
            .unwrap();
        let said_by = |i: usize, role: MessageRole, by: Option<&str>| ChatMessage {
            role,
            user_id: by.map(user),
            ..message(i)
        };
        for m in [
            said_by(0, MessageRole::User, Some("alice")),
            said_by(1, MessageRole::User, Some("bob@example.com")),
            said_by(2, MessageRole::Assistant, None),
            // An author on a message that is not a user's is not one the model is told of.
            said_by(3, MessageRole::Assistant, Some("carol")),
            said_by(4, MessageRole::System, Some("carol")),
            said_by(5, MessageRole::User, None),
        ] {
            store.append_message(&c, m).await.unwrap();
        }
        let authors = |prompt: Vec<marie_core::PromptMessage>| -> Vec<Option<String>> {
            prompt.into_iter().map(|p| p.author).collect()
        };
        assert_eq!(
            authors(
                store
                    .prompt_history(&c, HistoryQuery::newest(50))
                    .await
                    .unwrap()
            ),
            [
                Some("alice".to_owned()),
                Some("bob@example.com".to_owned()),
                None,
                None,
                None,
                None
            ]
        );
        // A page before a cursor too.
        assert_eq!(
            authors(
                store
                    .prompt_history(
                        &c,
                        HistoryQuery {
                            before: Some(id(2)),
                            limit: 50,
                        },
                    )
                    .await
                    .unwrap()
            ),
            [Some("alice".to_owned()), Some("bob@example.com".to_owned())]
        );
    }

    /// `unread`: every message (any branch, any author) stored after the member's mark, all
    /// of them before they mark one, at most `UNREAD_MAX`; a mark never moves back, in the
    /// order messages were stored (not the order of their ids), and `mark_read` returns the
    /// mark kept.
    pub async fn unread_counts_the_messages_after_each_members_mark(store: Store) {
        let c = conv("u-1");
        let (alice, bob) = (user("alice"), user("bob"));
        store
            .create_conversation(info("u-1", "alice"))
            .await
            .unwrap();
        store
            .create_conversation(info("u-2", "alice"))
            .await
            .unwrap();
        store.grant_access(&c, &bob).await.unwrap();
        for i in 0..3 {
            store.append_message(&c, message(i)).await.unwrap();
        }
        let unread = |who: UserId, archived: bool| {
            let store = store.clone();
            async move {
                store
                    .list_conversations(
                        &who,
                        &ListQuery {
                            archived,
                            ..list_query(10)
                        },
                    )
                    .await
                    .unwrap()
                    .conversations
                    .iter()
                    .map(|c| (c.info.conversation_id.to_string(), c.unread))
                    .collect::<Vec<_>>()
            }
        };
        let of_in = |who: UserId, c: &'static str| async move {
            unread(who, false)
                .await
                .into_iter()
                .find(|(id, _)| id == c)
                .map(|(_, n)| n)
        };
        let of = |who: UserId| of_in(who, "u-1");
        assert_eq!(of(bob.clone()).await, Some(3), "never marked: all of them");
        assert_eq!(
            unread(alice.clone(), false).await,
            [("u-2".to_owned(), 0), ("u-1".to_owned(), 3)],
            "her own messages too; none in an empty conversation"
        );

        assert_eq!(
            store.mark_read(&c, &bob, &id(1)).await.unwrap(),
            Some(id(1))
        );
        assert_eq!(of(bob.clone()).await, Some(1));
        assert_eq!(of(alice.clone()).await, Some(3), "each member's own");
        assert_eq!(
            store.mark_read(&c, &bob, &id(0)).await.unwrap(),
            Some(id(1)),
            "a mark never moves back: the one kept"
        );
        assert_eq!(of(bob.clone()).await, Some(1), "a mark never moves back");
        assert_eq!(
            store.mark_read(&c, &bob, &id(1)).await.unwrap(),
            Some(id(1))
        );
        assert_eq!(of(bob.clone()).await, Some(1));

        store.append_message(&c, message(3)).await.unwrap();
        assert_eq!(of(bob.clone()).await, Some(2), "a new message");
        // An edit of message 1 is on another branch: still a message after the mark.
        store
            .append_message(&c, message_after(4, Some(0)))
            .await
            .unwrap();
        assert_eq!(of(bob.clone()).await, Some(3), "any branch");
        assert_eq!(of(alice.clone()).await, Some(5));

        // The archive counts as the list does.
        assert!(store.set_archived(&c, &bob, true).await.unwrap());
        assert_eq!(unread(bob.clone(), true).await, [("u-1".to_owned(), 3)]);
        assert!(store.set_archived(&c, &bob, false).await.unwrap());

        assert_eq!(
            store.mark_read(&c, &bob, &id(4)).await.unwrap(),
            Some(id(4))
        );
        assert_eq!(of(bob.clone()).await, Some(0), "read up to the newest");
        assert_eq!(
            store.mark_read(&c, &alice, &id(2)).await.unwrap(),
            Some(id(2))
        );
        assert_eq!(of(alice.clone()).await, Some(2));

        // A mark of someone with no access, or in no conversation, changes nothing.
        assert_eq!(
            store.mark_read(&c, &user("carol"), &id(4)).await.unwrap(),
            None
        );
        assert_eq!(
            store
                .mark_read(&conv("never-created"), &bob, &id(0))
                .await
                .unwrap(),
            None
        );
        store.grant_access(&c, &user("carol")).await.unwrap();
        assert_eq!(of(user("carol")).await, Some(5));
        // A message the conversation does not hold: no mark yet, none; else the one kept.
        assert_eq!(
            store.mark_read(&c, &user("carol"), &id(99)).await.unwrap(),
            None
        );
        assert_eq!(
            store.mark_read(&c, &bob, &id(99)).await.unwrap(),
            Some(id(4))
        );
        assert_eq!(of(user("carol")).await, Some(5));

        // Storage order, not id order: an answer's id is made when it starts, and it is
        // stored when it ends, after a post that came meanwhile.
        let g = conv("u-3");
        store
            .create_conversation(info("u-3", "alice"))
            .await
            .unwrap();
        store.grant_access(&g, &bob).await.unwrap();
        let with_id = |message_id: &MessageId, i: usize| ChatMessage {
            message_id: message_id.clone(),
            parent_id: None,
            ..message(i)
        };
        let m1 = MessageId::new_time_ordered();
        store.append_to_active(&g, with_id(&m1, 0)).await.unwrap();
        let answer = MessageId::new_time_ordered();
        let p2 = MessageId::new_time_ordered();
        assert!(answer < p2, "the answer's id sorts before the post's");
        store.append_to_active(&g, with_id(&p2, 2)).await.unwrap();
        store
            .append_to_active(&g, with_id(&answer, 1))
            .await
            .unwrap();
        assert_eq!(
            store.mark_read(&g, &bob, &p2).await.unwrap(),
            Some(p2.clone())
        );
        assert_eq!(
            of_in(bob.clone(), "u-3").await,
            Some(1),
            "the answer, stored after the post bob read"
        );
        assert_eq!(
            store.mark_read(&g, &bob, &answer).await.unwrap(),
            Some(answer.clone()),
            "marking the answer moves forward"
        );
        assert_eq!(of_in(bob.clone(), "u-3").await, Some(0));
        assert_eq!(
            store.mark_read(&g, &bob, &p2).await.unwrap(),
            Some(answer.clone()),
            "marking the post after it is a move back: the answer's mark is kept"
        );
        assert_eq!(of_in(bob.clone(), "u-3").await, Some(0));
        // Replacing a message keeps where it was stored.
        store.append_message(&g, with_id(&p2, 2)).await.unwrap();
        assert_eq!(of_in(bob.clone(), "u-3").await, Some(0), "a replaced post");
        assert_eq!(
            store.mark_read(&g, &alice, &m1).await.unwrap(),
            Some(m1.clone())
        );
        assert_eq!(of_in(alice.clone(), "u-3").await, Some(2));

        // The count stops at UNREAD_MAX.
        let many = conv("u-4");
        store
            .create_conversation(info("u-4", "alice"))
            .await
            .unwrap();
        store.grant_access(&many, &bob).await.unwrap();
        for i in 0..105 {
            store.append_message(&many, message(i)).await.unwrap();
        }
        assert_eq!(ListedConversation::UNREAD_MAX, 100);
        assert_eq!(
            of_in(bob.clone(), "u-4").await,
            Some(ListedConversation::UNREAD_MAX),
            "105 unread show as 100"
        );
        assert_eq!(
            store.mark_read(&many, &bob, &id(3)).await.unwrap(),
            Some(id(3))
        );
        assert_eq!(of_in(bob.clone(), "u-4").await, Some(100), "101 unread");
        store.mark_read(&many, &bob, &id(5)).await.unwrap();
        assert_eq!(
            of_in(bob.clone(), "u-4").await,
            Some(99),
            "below the bound, exact"
        );
    }

    /// A removed member's mark goes with them (let in again, they start over); a deleted
    /// conversation's marks go with it, and no other conversation's do.
    pub async fn read_marks_go_with_members_and_conversations(store: Store) {
        let (alice, bob) = (user("alice"), user("bob"));
        for c in ["rm-1", "rm-2"] {
            store.create_conversation(info(c, "alice")).await.unwrap();
            store.grant_access(&conv(c), &bob).await.unwrap();
            for i in 0..3 {
                store.append_message(&conv(c), message(i)).await.unwrap();
            }
            for who in [&alice, &bob] {
                store.mark_read(&conv(c), who, &id(1)).await.unwrap();
            }
        }
        let unread = |who: UserId| {
            let store = store.clone();
            async move {
                let page = store
                    .list_conversations(&who, &list_query(10))
                    .await
                    .unwrap();
                page.conversations
                    .iter()
                    .map(|c| (c.info.conversation_id.to_string(), c.unread))
                    .collect::<Vec<_>>()
            }
        };
        let both = |a: u64, b: u64| vec![("rm-2".to_owned(), a), ("rm-1".to_owned(), b)];
        assert_eq!(unread(bob.clone()).await, both(1, 1));

        assert!(store.remove_member(&conv("rm-1"), &bob).await.unwrap());
        store.grant_access(&conv("rm-1"), &bob).await.unwrap();
        assert_eq!(
            unread(bob.clone()).await,
            both(1, 3),
            "let in again, bob has read nothing"
        );
        assert_eq!(
            unread(alice.clone()).await,
            both(1, 1),
            "alice's mark stays"
        );
        assert!(
            !store.remove_member(&conv("rm-1"), &alice).await.unwrap(),
            "not the creator"
        );
        assert_eq!(unread(alice.clone()).await, both(1, 1));

        assert!(store.delete_conversation(&conv("rm-2")).await.unwrap());
        store.delete_history(&conv("rm-2")).await.unwrap();
        assert_eq!(unread(alice.clone()).await, [("rm-1".to_owned(), 1)]);
        assert_eq!(unread(bob.clone()).await, [("rm-1".to_owned(), 3)]);
    }
}

/// Instantiates every contract case for one kind of store. `$make` is an async expression
/// giving `(Store, guard)`; the guard is dropped at the end of the test (cleanup).
macro_rules! contract_tests {
    ($kind:ident, $make:path) => {
        mod $kind {
            use super::*;

            contract_tests!(@case $make;
                a_conversation_is_created_once,
                access_is_for_creator_and_invitees_in_order,
                a_users_list_is_ordered_by_activity_and_paged,
                titles_and_settings_change_and_are_searched,
                the_archive_is_each_users_own,
                a_removed_member_loses_access_and_the_list_entry,
                a_deleted_conversation_is_gone_for_good,
                history_pages_back_from_a_cursor,
                message_content_round_trips,
                concurrent_appends_are_all_kept,
                branches_keep_every_message_and_one_active_path,
                appends_go_after_the_active_leaf,
                concurrent_appends_to_the_active_leaf_follow_each_other,
                appends_to_the_active_leaf_follow_a_switch,
                queued_sends_wait_in_order_up_to_max,
                usage_adds_up_per_user_and_window,
                sessions_expire_and_can_be_removed,
                one_answer_holds_a_conversation,
                a_lease_lapses_unless_renewed,
                concurrent_claims_have_one_winner,
                an_approval_is_decided_once,
                a_client_calls_record_is_found_and_carries_its_output,
                concurrent_decisions_have_one_winner,
                the_answer_policy_is_kept_and_changed,
                the_assistants_name_round_trips,
                prompts_name_the_authors_of_user_messages,
                unread_counts_the_messages_after_each_members_mark,
                read_marks_go_with_members_and_conversations,
            );
        }
    };
    (@case $make:path; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, guard) = $make(stringify!($case)).await;
                contract::$case(store).await;
                guard.finish().await;
            }
        )+
    };
}

/// What a store leaves to clean up after a test.
trait Cleanup {
    async fn finish(self);
}

impl Cleanup for () {
    async fn finish(self) {}
}

#[cfg(feature = "memory")]
async fn memory_store(_test: &str) -> (Store, ()) {
    (Arc::new(marie_adapters::MemoryStore::new()), ())
}

#[cfg(feature = "memory")]
contract_tests!(in_memory, memory_store);

#[cfg(feature = "redis")]
mod redis_support {
    use super::support::proxy::{redis_url, unique_prefix};
    use super::*;
    use marie_adapters::{RedisConfig, RedisStore};

    /// Deletes every key under the test's prefix.
    pub struct Keys(pub String);

    impl Keys {
        pub async fn delete_all(&self) -> usize {
            let client = redis::Client::open(redis_url()).unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}:*", self.0))
                .query_async(&mut conn)
                .await
                .unwrap();
            if !keys.is_empty() {
                redis::cmd("DEL")
                    .arg(&keys)
                    .query_async::<()>(&mut conn)
                    .await
                    .unwrap();
            }
            keys.len()
        }
    }

    impl super::Cleanup for Keys {
        async fn finish(self) {
            self.delete_all().await;
        }
    }

    pub fn config(test: &str) -> RedisConfig {
        // Keys a failed test leaves behind expire on their own.
        RedisConfig::new(redis_url())
            .prefix(unique_prefix(test))
            .conversation_ttl(Duration::from_secs(3600))
    }

    pub async fn redis_store(test: &str) -> (Store, Keys) {
        let config = config(test);
        let keys = Keys(config.prefix.clone());
        let store = RedisStore::connect(config)
            .await
            .expect("Redis answers on MARIE_TEST_REDIS_URL (default 127.0.0.1:6379)");
        (Arc::new(store), keys)
    }
}

#[cfg(feature = "redis")]
contract_tests!(in_redis, redis_support::redis_store);

// ---------------------------------------------------------------------------------------
// Redis only: the key layout, TTLs, and what happens when Redis goes away
// ---------------------------------------------------------------------------------------

#[cfg(feature = "redis")]
mod redis_specific {
    use std::sync::Mutex;

    use super::redis_support::{Keys, config};
    use super::support::proxy::{Proxy, redis_addr, redis_url};
    use super::*;
    use marie_adapters::{RedisConfig, RedisControlBus, RedisStore};
    use marie_core::{ControlBus, ControlMessage, StoreError, StreamChunk, StreamEvent};

    async fn raw() -> redis::aio::MultiplexedConnection {
        redis::Client::open(redis_url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keys_are_prefixed_and_hash_tagged_per_conversation() {
        let config = config("layout");
        let prefix = config.prefix.clone();
        let store = RedisStore::connect(config).await.unwrap();
        let c = conv("team.general");
        store
            .create_conversation(info("team.general", "alice"))
            .await
            .unwrap();
        store.grant_access(&c, &user("bob")).await.unwrap();
        store.append_message(&c, message(1)).await.unwrap();
        store.mark_read(&c, &user("bob"), &id(1)).await.unwrap();
        store
            .claim_answer(&c, &stream("s"), Duration::from_secs(60))
            .await
            .unwrap();
        let session = SessionId::random();
        store
            .put_session(SessionRecord {
                session_id: session.clone(),
                user_id: user("alice"),
                rooms: vec![c.clone()],
                expires_at: now_millis() + 60_000,
            })
            .await
            .unwrap();

        let mut conn = raw().await;
        let mut keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}:*"))
            .query_async(&mut conn)
            .await
            .unwrap();
        keys.sort();
        let conv_keys: Vec<_> = [
            "answer", "ids", "info", "kids", "members", "msgs", "order", "path", "reads", "seq",
            "tree",
        ]
        .iter()
        .map(|k| format!("{prefix}:conv:{{team.general}}:{k}"))
        .collect();
        let mut want = conv_keys.clone();
        want.push(format!("{prefix}:session:{{{session}}}"));
        // Each member's list of conversations, hash-tagged by its user.
        for member in ["alice", "bob"] {
            want.push(format!("{prefix}:user:{{{member}}}:convs"));
        }
        want.sort();
        assert_eq!(keys, want);

        // All of a conversation's keys hash to one Redis Cluster slot: the slot of a key
        // with a hash tag is that of the text between its first `{` and the next `}`.
        for k in &conv_keys {
            let open = k.find('{').unwrap();
            let close = open + k[open..].find('}').unwrap();
            assert_eq!(&k[open + 1..close], "team.general", "{k}");
        }

        // Sessions and leases expire on their own; conversations here have a TTL too.
        for k in &keys {
            let ttl: i64 = redis::cmd("PTTL")
                .arg(k)
                .query_async(&mut conn)
                .await
                .unwrap();
            assert!(ttl > 0, "{k} has no TTL ({ttl})");
        }
        Keys(prefix).delete_all().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_a_ttl_conversations_stay_and_history_can_be_capped() {
        let prefix = super::support::proxy::unique_prefix("cap");
        let store = RedisStore::connect(
            RedisConfig::new(redis_url())
                .prefix(prefix.clone())
                .history_limit(3),
        )
        .await
        .unwrap();
        let c = conv("capped");
        store
            .create_conversation(info("capped", "alice"))
            .await
            .unwrap();
        for i in 0..5 {
            store.append_message(&c, message(i)).await.unwrap();
        }
        assert_eq!(
            ids(&store.history(&c, query(None, 50)).await.unwrap()),
            expected(2..5),
            "the oldest are dropped"
        );
        let mut conn = raw().await;
        let stored: i64 = redis::cmd("HLEN")
            .arg(format!("{prefix}:conv:{{capped}}:msgs"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(stored, 3, "dropped messages leave no data behind");
        let nodes: i64 = redis::cmd("HLEN")
            .arg(format!("{prefix}:conv:{{capped}}:tree"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(nodes, 3, "nor in the tree");
        let order: Vec<(String, u64)> = redis::cmd("ZRANGE")
            .arg(format!("{prefix}:conv:{{capped}}:order"))
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            order,
            (2..5)
                .map(|i| (id(i).to_string(), i as u64 + 1))
                .collect::<Vec<_>>(),
            "nor in the storage order, whose positions are not reused"
        );
        store.switch_branch(&c, &id(2)).await.unwrap();
        assert_eq!(
            ids(&store.history(&c, query(None, 50)).await.unwrap()),
            expected(2..5),
            "what is left is still one branch"
        );
        let ttl: i64 = redis::cmd("PTTL")
            .arg(format!("{prefix}:conv:{{capped}}:info"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(ttl, -1, "no TTL unless configured");
        Keys(prefix).delete_all().await;
    }

    /// History written before branches (a sorted set of ids and a hash of messages without
    /// `parent_id`) reads as one branch, and takes new messages after its last one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn history_from_before_branches_is_one_branch() {
        let prefix = super::support::proxy::unique_prefix("upgrade");
        let store = RedisStore::connect(RedisConfig::new(redis_url()).prefix(prefix.clone()))
            .await
            .unwrap();
        let c = conv("old");
        let base = format!("{prefix}:conv:{{old}}");
        let mut conn = raw().await;
        let _: () = redis::cmd("SET")
            .arg(format!("{base}:info"))
            .arg(serde_json::to_string(&info("old", "alice")).unwrap())
            .query_async(&mut conn)
            .await
            .unwrap();
        for i in 0..3 {
            let mut old = serde_json::to_value(message(i)).unwrap();
            old.as_object_mut().unwrap().remove("parent_id");
            let _: () = redis::pipe()
                .cmd("ZADD")
                .arg(format!("{base}:ids"))
                .arg(0)
                .arg(id(i).as_str())
                .ignore()
                .cmd("HSET")
                .arg(format!("{base}:msgs"))
                .arg(id(i).as_str())
                .arg(old.to_string())
                .ignore()
                .query_async(&mut conn)
                .await
                .unwrap();
        }
        let history = store.history(&c, query(None, 50)).await.unwrap();
        assert_eq!(history, (0..3).map(message).collect::<Vec<_>>());
        assert_eq!(store.active_leaf(&c).await.unwrap(), Some(id(2)));
        store.append_message(&c, message(3)).await.unwrap();
        assert_eq!(
            ids(&store.history(&c, query(None, 50)).await.unwrap()),
            expected(0..4)
        );
        // It gets storage positions too (in id order), and a new message the next one.
        let order: Vec<(String, u64)> = redis::cmd("ZRANGE")
            .arg(format!("{base}:order"))
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            order,
            (0..4)
                .map(|i| (id(i).to_string(), i as u64 + 1))
                .collect::<Vec<_>>()
        );
        Keys(prefix).delete_all().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_conversation_ttl_expires_the_whole_conversation() {
        let prefix = super::support::proxy::unique_prefix("ttl");
        let store = RedisStore::connect(
            RedisConfig::new(redis_url())
                .prefix(prefix.clone())
                .conversation_ttl(Duration::from_millis(300)),
        )
        .await
        .unwrap();
        let c = conv("short-lived");
        store
            .create_conversation(info("short-lived", "alice"))
            .await
            .unwrap();
        store.grant_access(&c, &user("bob")).await.unwrap();
        store.append_message(&c, message(0)).await.unwrap();
        let deadline = tokio::time::Instant::now() + WAIT;
        while store.conversation(&c).await.unwrap().is_some() {
            assert!(tokio::time::Instant::now() < deadline, "never expired");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(store.members(&c).await.unwrap().is_empty());
        assert!(store.history(&c, query(None, 10)).await.unwrap().is_empty());
        Keys(prefix).delete_all().await;
    }

    /// Redis unreachable: every operation fails fast with `Unavailable`, nothing hangs or
    /// panics, and the same store works again once Redis is back, with every write it
    /// acknowledged before the cut still there.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_outage_gives_quick_errors_then_the_store_recovers() {
        let proxy = Proxy::start(redis_addr()).await;
        let prefix = super::support::proxy::unique_prefix("outage");
        let timeout = Duration::from_millis(500);
        let store = RedisStore::connect(
            RedisConfig::new(proxy.url())
                .prefix(prefix.clone())
                .timeout(timeout)
                .connect_timeout(Duration::from_millis(300)),
        )
        .await
        .unwrap();
        let c = conv("outage");
        store
            .create_conversation(info("outage", "alice"))
            .await
            .unwrap();
        store.append_message(&c, message(0)).await.unwrap();

        proxy.cut();
        let started = std::time::Instant::now();
        let mut failures = 0;
        for i in 1..4 {
            match store.append_message(&c, message(i)).await {
                Err(StoreError::Unavailable(_)) => failures += 1,
                other => panic!("expected Unavailable while cut, got {other:?}"),
            }
            assert!(matches!(
                store.history(&c, query(None, 10)).await,
                Err(StoreError::Unavailable(_))
            ));
        }
        let elapsed = started.elapsed();
        assert_eq!(failures, 3);
        assert!(
            elapsed < timeout * 6 + Duration::from_secs(1),
            "6 failing operations took {elapsed:?}"
        );

        proxy.restore();
        let deadline = tokio::time::Instant::now() + WAIT;
        while store.ping().await.is_err() {
            assert!(tokio::time::Instant::now() < deadline, "never reconnected");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        store
            .append_message(&c, message_after(4, Some(0)))
            .await
            .unwrap();
        assert_eq!(
            ids(&store.history(&c, query(None, 10)).await.unwrap()),
            [message(0), message(4)]
                .iter()
                .map(|m| m.message_id.as_str().to_owned())
                .collect::<Vec<_>>(),
            "what was acknowledged is there; what failed is not"
        );
        Keys(prefix).delete_all().await;
    }

    fn recorder(bus: &RedisControlBus) -> Arc<(Mutex<Vec<ControlMessage>>, tokio::sync::Notify)> {
        let seen: Arc<(Mutex<Vec<ControlMessage>>, tokio::sync::Notify)> = Arc::default();
        let s = seen.clone();
        bus.subscribe(Arc::new(move |m| {
            s.0.lock().unwrap().push(m);
            s.1.notify_waiters();
        }));
        seen
    }

    async fn wait_for(
        seen: &(Mutex<Vec<ControlMessage>>, tokio::sync::Notify),
        want: &ControlMessage,
    ) {
        tokio::time::timeout(WAIT, async {
            loop {
                let notified = seen.1.notified();
                if seen.0.lock().unwrap().contains(want) {
                    return;
                }
                notified.await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{want:?} never arrived"));
    }

    fn cancel(n: usize) -> ControlMessage {
        ControlMessage::CancelAnswer {
            conversation_id: conv("c"),
            stream_id: stream(&format!("s{n}")),
        }
    }

    /// A burst of stream events, published as one message, reaches the other node whole
    /// and in order, typed as it was sent.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_stream_events_arrives_whole_and_in_order() {
        let prefix = super::support::proxy::unique_prefix("bus-batch");
        let connect =
            || RedisControlBus::connect(RedisConfig::new(redis_url()).prefix(prefix.clone()));
        let (a, b) = (connect().await.unwrap(), connect().await.unwrap());
        let seen_b = recorder(&b);
        let events: Vec<StreamEvent> = (1..=50)
            .map(|seq| {
                StreamEvent::Chunk(StreamChunk {
                    conversation_id: conv("c"),
                    stream_id: stream("s"),
                    seq,
                    content: format!("piece {seq} "),
                    done: false,
                    tokens_used: seq,
                    first_seq: None,
                })
            })
            .collect();
        let burst = ControlMessage::Stream {
            origin: "node-a".into(),
            events,
        };
        a.publish(burst.clone()).await.unwrap();
        a.publish(cancel(1)).await.unwrap();
        wait_for(&seen_b, &cancel(1)).await;
        assert_eq!(*seen_b.0.lock().unwrap(), vec![burst, cancel(1)]);
    }

    /// Messages reach every node; a node cut off from Redis subscribes again by itself once
    /// Redis is back, and messages reach it again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_bus_reaches_every_node_and_resubscribes_after_an_outage() {
        let proxy = Proxy::start(redis_addr()).await;
        let prefix = super::support::proxy::unique_prefix("bus");
        let a = RedisControlBus::connect(RedisConfig::new(redis_url()).prefix(prefix.clone()))
            .await
            .unwrap();
        let b = RedisControlBus::connect(
            RedisConfig::new(proxy.url())
                .prefix(prefix.clone())
                .timeout(Duration::from_millis(500))
                .health_interval(Duration::from_millis(100)),
        )
        .await
        .unwrap();
        let seen_a = recorder(&a);
        let seen_b = recorder(&b);

        a.publish(cancel(1)).await.unwrap();
        wait_for(&seen_b, &cancel(1)).await;
        wait_for(&seen_a, &cancel(1)).await;
        b.publish(cancel(2)).await.unwrap();
        wait_for(&seen_a, &cancel(2)).await;

        proxy.cut();
        assert!(
            matches!(b.publish(cancel(3)).await, Err(StoreError::Unavailable(_))),
            "publishing while cut off fails clearly"
        );
        proxy.restore();

        // Pub/sub keeps nothing: publish until b, subscribed again, hears one.
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut n = 100;
        loop {
            a.publish(cancel(n)).await.unwrap();
            if tokio::time::timeout(Duration::from_millis(100), wait_for(&seen_b, &cancel(n)))
                .await
                .is_ok()
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "b never resubscribed"
            );
            n += 1;
        }
        b.publish(cancel(4)).await.unwrap();
        wait_for(&seen_a, &cancel(4)).await;
    }
}

// ---------------------------------------------------------------------------------------
// SQL: SQLite files and PostgreSQL
// ---------------------------------------------------------------------------------------

#[cfg(feature = "sql")]
mod sql_support {
    #[cfg(feature = "postgres")]
    pub use super::support::postgres::Schema;
    #[cfg(feature = "sqlite")]
    pub use super::support::temp_dir::TempDir;
    use super::*;
    #[cfg(feature = "sqlite")]
    use marie_adapters::SqlStore;

    #[cfg(feature = "sqlite")]
    impl super::Cleanup for TempDir {
        async fn finish(self) {}
    }

    #[cfg(feature = "sqlite")]
    pub async fn sqlite_store(test: &str) -> (Store, TempDir) {
        let dir = TempDir::new(test);
        let store = SqlStore::connect(&dir.url("marie.db")).await.unwrap();
        (Arc::new(store), dir)
    }

    #[cfg(feature = "postgres")]
    impl super::Cleanup for Schema {
        async fn finish(self) {
            self.drop_all().await;
        }
    }

    #[cfg(feature = "postgres")]
    pub async fn postgres_store(test: &str) -> (Store, Schema) {
        let schema = Schema::create(test).await;
        let store = schema.store().await;
        (Arc::new(store), schema)
    }
}

#[cfg(feature = "sqlite")]
contract_tests!(in_sqlite, sql_support::sqlite_store);

#[cfg(feature = "postgres")]
contract_tests!(in_postgres, sql_support::postgres_store);

#[cfg(feature = "sql")]
mod sql_specific {
    #[cfg(feature = "sqlite")]
    use super::sql_support::TempDir;
    use super::*;
    use marie_adapters::SqlStore;
    use marie_core::StoreError;

    /// A message of the long conversation: ids `b000000`, `b000001`, ... sort as they came.
    #[cfg(feature = "sqlite")]
    fn long(i: usize) -> MessageId {
        MessageId::parse(format!("b{i:06}")).unwrap()
    }

    #[cfg(feature = "sqlite")]
    fn long_ids(range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|i| long(i).as_str().to_owned()).collect()
    }

    /// Everything written before a reconnect is there after it: conversation, members,
    /// every branch and the active one, sessions, leases, approvals, queued sends and
    /// usage; migrations that already ran do not run again.
    #[cfg(feature = "sqlite")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sqlite_file_keeps_everything_across_a_reconnect() {
        use sqlx::Connection;

        let dir = TempDir::new("reconnect");
        let url = dir.url("marie.db");
        let c = conv("kept");
        let session = SessionRecord {
            session_id: SessionId::random(),
            user_id: user("alice"),
            rooms: vec![c.clone()],
            expires_at: now_millis() + 60_000,
        };
        let pending = approval("kept", "s1");
        let queued = QueuedSend {
            client_tools: Default::default(),
            conversation_id: c.clone(),
            user_id: user("bob"),
            roles: Vec::new(),
            message: "after this one".into(),
            attachments: Vec::new(),
            stream: true,
            message_id: id(20),
            answer_message_id: id(21),
            stream_id: stream("s2"),
            queued_at: now_millis(),
        };
        let day = BudgetPeriod::Day.window(now_millis());
        let migrations = || async {
            let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
            let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
                .fetch_one(&mut conn)
                .await
                .unwrap();
            applied
        };
        {
            let store = SqlStore::connect(&url).await.unwrap();
            store
                .create_conversation(info("kept", "alice"))
                .await
                .unwrap();
            store.grant_access(&c, &user("bob")).await.unwrap();
            for i in 0..4 {
                store.append_message(&c, message(i)).await.unwrap();
            }
            store
                .append_message(&c, message_after(10, Some(1)))
                .await
                .unwrap();
            assert_eq!(store.switch_branch(&c, &id(2)).await.unwrap(), Some(id(3)));
            store.put_session(session.clone()).await.unwrap();
            assert!(
                store
                    .claim_answer(&c, &stream("s1"), Duration::from_secs(60))
                    .await
                    .unwrap()
            );
            store.create_approval(&pending).await.unwrap();
            assert_eq!(store.enqueue_send(&queued, 5).await.unwrap(), Some(1));
            assert_eq!(store.add_usage(&user("alice"), day, 42).await.unwrap(), 42);
            store
                .update_conversation(
                    &c,
                    &ConversationChange {
                        title: Some("Kept title".into()),
                        model: Some("kept-model".into()),
                        system_prompt: Some("Kept prompt".into()),
                        answer_policy: Some(AnswerPolicy::Mention),
                    },
                    1_800_000_000_000,
                )
                .await
                .unwrap();
            store
                .touch(&c, &said(1_800_000_000_100, "kept preview"))
                .await
                .unwrap();
            assert!(store.set_archived(&c, &user("bob"), true).await.unwrap());
            store.mark_read(&c, &user("bob"), &id(2)).await.unwrap();
            store
                .create_conversation(info("gone", "alice"))
                .await
                .unwrap();
            store
                .append_message(&conv("gone"), message(0))
                .await
                .unwrap();
            store
                .mark_read(&conv("gone"), &user("alice"), &id(0))
                .await
                .unwrap();
            assert!(store.delete_conversation(&conv("gone")).await.unwrap());
            store.close().await;
        }
        {
            let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
            let marks: Vec<(String, String, String)> = sqlx::query_as(
                "SELECT conversation_id, user_id, message_id FROM marie_reads \
                 ORDER BY conversation_id, user_id",
            )
            .fetch_all(&mut conn)
            .await
            .unwrap();
            assert_eq!(
                marks,
                [("kept".to_owned(), "bob".to_owned(), id(2).to_string())],
                "a deleted conversation's marks went with it"
            );
        }
        let applied = migrations().await;
        assert!(applied >= 1);

        let store = SqlStore::connect(&url).await.unwrap();
        assert_eq!(migrations().await, applied, "no migration ran twice");
        let kept = store.conversation(&c).await.unwrap().unwrap();
        assert_eq!(
            (
                kept.title.as_deref(),
                kept.model.as_deref(),
                kept.system_prompt.as_deref(),
                kept.updated_at
            ),
            (
                Some("Kept title"),
                Some("kept-model"),
                Some("Kept prompt"),
                1_800_000_000_100
            ),
            "titles and settings survive the restart"
        );
        assert_eq!(kept.answer_policy, AnswerPolicy::Mention);
        assert_eq!(
            kept.last_message.map(|m| m.preview),
            Some("kept preview".into())
        );
        assert_eq!(
            store.members(&c).await.unwrap(),
            vec![user("alice"), user("bob")]
        );
        let bobs_archive = ListQuery {
            archived: true,
            ..list_query(10)
        };
        let bobs = store
            .list_conversations(&user("bob"), &bobs_archive)
            .await
            .unwrap();
        assert_eq!(listed(&bobs), ["kept"]);
        assert_eq!(
            bobs.conversations[0].unread, 2,
            "m00003 and m00010 are after bob's mark"
        );
        assert!(
            !store
                .create_conversation(info("gone", "carol"))
                .await
                .unwrap(),
            "a deleted id stays used"
        );
        let history = store.history(&c, query(None, 50)).await.unwrap();
        assert_eq!(ids(&history), expected(0..4), "the branch switched to");
        assert_eq!(ids_of(&history[2].siblings), ids_of(&[id(2), id(10)]));
        assert_eq!(history[1], message(1));
        assert_eq!(
            store.message(&c, &id(10)).await.unwrap(),
            Some(message_after(10, Some(1)))
        );
        assert_eq!(store.active_leaf(&c).await.unwrap(), Some(id(3)));
        assert_eq!(
            store.session(&session.session_id).await.unwrap(),
            Some(session)
        );
        assert_eq!(
            store.active_answer(&c).await.unwrap().map(|a| a.stream_id),
            Some(stream("s1"))
        );
        assert_eq!(
            store.pending_approval(&c).await.unwrap(),
            Some(pending.clone())
        );
        assert_eq!(store.queued_sends(&c).await.unwrap(), vec![queued]);
        assert_eq!(store.usage(&user("alice"), day).await.unwrap(), 42);
        // And it goes on from there.
        store.append_message(&c, message(4)).await.unwrap();
        assert_eq!(
            ids(&store.history(&c, query(None, 50)).await.unwrap()),
            expected(0..5)
        );
    }

    /// A conversation of 100,000 messages (seeded in one statement) pages from anywhere,
    /// branches near its start, and switches back down its whole length. Correctness only:
    /// the page queries are range reads of the active path's key (see the unit tests of
    /// `marie_adapters::sql`, which check SQLite's query plans).
    #[cfg(feature = "sqlite")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_100k_message_conversation_pages_from_the_middle() {
        use sqlx::Connection;

        const N: usize = 100_000;
        let dir = TempDir::new("long");
        let url = dir.url("marie.db");
        let store = SqlStore::connect(&url).await.unwrap();
        let c = conv("long");
        store
            .create_conversation(info("long", "alice"))
            .await
            .unwrap();
        {
            let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
            let mut tx = conn.begin().await.unwrap();
            sqlx::query(&format!(
                "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {last})
                 INSERT INTO marie_messages (conversation_id, message_id, parent_id, depth, seq,
                     role, content, user_id, created_at, parts)
                 SELECT 'long', printf('b%06d', i),
                        CASE WHEN i = 0 THEN NULL ELSE printf('b%06d', i - 1) END, i, i + 1,
                        CASE i % 2 WHEN 0 THEN 'user' ELSE 'assistant' END, 'message ' || i,
                        NULL, 1700000000000 + i, NULL
                 FROM n",
                last = N - 1
            ))
            .execute(&mut *tx)
            .await
            .unwrap();
            sqlx::query(
                "INSERT INTO marie_active_path (conversation_id, depth, message_id)
                 SELECT conversation_id, depth, message_id FROM marie_messages
                 WHERE conversation_id = 'long'",
            )
            .execute(&mut *tx)
            .await
            .unwrap();
            sqlx::query(&format!(
                "UPDATE marie_conversations SET last_seq = {N} WHERE conversation_id = 'long'"
            ))
            .execute(&mut *tx)
            .await
            .unwrap();
            tx.commit().await.unwrap();
        }
        let page = |before: Option<usize>| {
            let store = store.clone();
            let c = c.clone();
            async move {
                store
                    .history(
                        &c,
                        HistoryQuery {
                            before: before.map(long),
                            limit: 50,
                        },
                    )
                    .await
                    .unwrap()
            }
        };

        let middle = page(Some(50_000)).await;
        assert_eq!(ids(&middle), long_ids(49_950..50_000));
        assert_eq!(middle[0].content, "message 49950");
        assert_eq!(middle[0].parent_id, Some(long(49_949)));
        assert_eq!(ids(&page(None).await), long_ids(N - 50..N));
        assert_eq!(ids(&page(Some(30)).await), long_ids(0..30));
        assert_eq!(store.active_leaf(&c).await.unwrap(), Some(long(N - 1)));

        // An edit of the third message: the active branch is three messages long...
        let edit = ChatMessage {
            message_id: long(N),
            parent_id: Some(long(1)),
            ..message(2)
        };
        store.append_message(&c, edit).await.unwrap();
        let short = page(None).await;
        assert_eq!(
            ids(&short),
            long_ids(0..2)
                .into_iter()
                .chain(long_ids(N..N + 1))
                .collect::<Vec<_>>()
        );
        assert_eq!(ids_of(&short[2].siblings), ids_of(&[long(2), long(N)]));
        // ... a cursor that is not on it cuts by id order ...
        assert_eq!(ids(&page(Some(50_000)).await), long_ids(0..2));
        // ... and switching back walks down all 99,998 messages to the old leaf.
        assert_eq!(
            store.switch_branch(&c, &long(2)).await.unwrap(),
            Some(long(N - 1))
        );
        assert_eq!(ids(&page(Some(50_000)).await), long_ids(49_950..50_000));
        assert_eq!(ids(&page(None).await), long_ids(N - 50..N));
        let prompt = store
            .prompt_history(
                &c,
                HistoryQuery {
                    before: Some(long(70_000)),
                    limit: 2,
                },
            )
            .await
            .unwrap();
        let contents: Vec<_> = prompt.into_iter().map(|p| p.content).collect();
        assert_eq!(contents, ["message 69998", "message 69999"]);
    }

    /// `list_conversations {query}` on SQL also finds the words of messages: every word,
    /// each as a prefix, in the caller's conversations only, and no longer once the
    /// history is gone.
    async fn message_text_is_searched(store: SqlStore) {
        let ask = |text: &str| ListQuery {
            query: Some(text.into()),
            ..list_query(10)
        };
        for (c, creator) in [("s-rust", "alice"), ("s-trip", "alice"), ("s-bob", "bob")] {
            store.create_conversation(info(c, creator)).await.unwrap();
        }
        let say = |i: usize, text: &str| ChatMessage {
            content: text.into(),
            ..message(i)
        };
        store
            .append_message(
                &conv("s-rust"),
                say(0, "How do lifetimes work with the borrow checker?"),
            )
            .await
            .unwrap();
        store
            .append_message(&conv("s-trip"), say(1, "Plan a trip to Lisbon in May"))
            .await
            .unwrap();
        store
            .append_message(&conv("s-bob"), say(2, "the borrow checker again"))
            .await
            .unwrap();
        let alice = user("alice");
        let found = |text: &'static str| {
            let store = store.clone();
            let alice = alice.clone();
            async move { listed(&store.list_conversations(&alice, &ask(text)).await.unwrap()) }
        };
        assert_eq!(found("borrow").await, ["s-rust"], "not bob's");
        assert_eq!(
            found("Borrow CHECK").await,
            ["s-rust"],
            "prefixes, any case"
        );
        assert_eq!(found("lisbon may").await, ["s-trip"]);
        assert!(found("lisbon rust").await.is_empty(), "every word");
        assert!(found("zebra").await.is_empty());
        assert_eq!(
            found("\"OR\" * -- '").await.len(),
            0,
            "syntax is only words"
        );
        // Titles still match by substring.
        store
            .update_conversation(
                &conv("s-trip"),
                &ConversationChange {
                    title: Some("Summer holidays".into()),
                    ..ConversationChange::default()
                },
                2_000_000_000_000,
            )
            .await
            .unwrap();
        assert_eq!(found("holiday").await, ["s-trip"]);
        // A message replaced in place is found by its new text only.
        store
            .append_message(&conv("s-trip"), say(1, "Plan a trip to Porto"))
            .await
            .unwrap();
        assert!(found("lisbon").await.is_empty());
        assert_eq!(found("porto").await, ["s-trip"]);
        store.delete_history(&conv("s-rust")).await.unwrap();
        assert!(found("lifetimes").await.is_empty());
    }

    #[cfg(feature = "sqlite")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_searches_message_text() {
        let dir = TempDir::new("search");
        message_text_is_searched(SqlStore::connect(&dir.url("marie.db")).await.unwrap()).await;
        // Messages stored before the index existed are found too: drop it, reconnect.
        use sqlx::Connection;
        let url = dir.url("marie.db");
        let store = SqlStore::connect(&url).await.unwrap();
        sqlx::any::install_default_drivers();
        let mut raw = sqlx::AnyConnection::connect(&url).await.unwrap();
        for ddl in [
            "DROP TRIGGER marie_messages_fts_insert",
            "DROP TRIGGER marie_messages_fts_delete",
            "DROP TRIGGER marie_messages_fts_update",
            "DROP TABLE marie_messages_fts",
        ] {
            sqlx::query(ddl).execute(&mut raw).await.unwrap();
        }
        raw.close().await.unwrap();
        store
            .append_message(
                &conv("s-bob"),
                ChatMessage {
                    content: "written before the index".into(),
                    ..message(7)
                },
            )
            .await
            .unwrap();
        store.close().await;
        let store = SqlStore::connect(&url).await.unwrap();
        let page = store
            .list_conversations(
                &user("bob"),
                &ListQuery {
                    query: Some("before index".into()),
                    ..list_query(10)
                },
            )
            .await
            .unwrap();
        assert_eq!(listed(&page), ["s-bob"]);
    }

    #[cfg(feature = "postgres")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_searches_message_text() {
        let schema = super::sql_support::Schema::create("search").await;
        message_text_is_searched(schema.store().await).await;
        schema.drop_all().await;
    }

    /// With a `history_ttl`, a conversation nobody writes to goes, history, members and
    /// files with it, and its id stays taken; one that is written to stays.
    #[cfg(feature = "sqlite")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_history_ttl_expires_idle_conversations_only() {
        let dir = TempDir::new("history-ttl");
        history_ttl_expires_idle_conversations_only(dir.url("marie.db")).await;
    }

    #[cfg(feature = "postgres")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_history_ttl_expires_idle_conversations_only() {
        let schema = super::sql_support::Schema::create("history_ttl").await;
        history_ttl_expires_idle_conversations_only(schema.url()).await;
        schema.drop_all().await;
    }

    async fn history_ttl_expires_idle_conversations_only(url: String) {
        use marie_core::{FileId, FileMeta, FileStore};

        let ttl = Duration::from_millis(400);
        let store = SqlStore::connect_with(marie_adapters::SqlConfig::new(url).history_ttl(ttl))
            .await
            .unwrap();
        let (idle, busy, running) = (conv("idle"), conv("busy"), conv("running"));
        for c in ["idle", "busy", "running"] {
            let now = marie_core::now_millis();
            store
                .create_conversation(info_at(c, "alice", now))
                .await
                .unwrap();
            store.append_message(&conv(c), message(0)).await.unwrap();
        }
        store.grant_access(&idle, &user("bob")).await.unwrap();
        // An answer holds `running` for longer than the test: nobody writes to it, yet it
        // stays while the lease is live.
        let answer = stream("s-running");
        assert!(
            store
                .claim_answer(&running, &answer, Duration::from_secs(30))
                .await
                .unwrap()
        );
        let file = FileId::parse("f-idle").unwrap();
        let meta = FileMeta {
            file_id: file.clone(),
            user_id: user("alice"),
            conversation_id: idle.clone(),
            name: "a.txt".into(),
            content_type: "text/plain".into(),
            size: 5,
            created_at: 0,
        };
        store
            .put(&meta, marie_core::Bytes::from_static(b"hello"), None)
            .await
            .unwrap();
        assert_eq!(store.used_bytes(&user("alice")).await.unwrap(), 5);

        // `busy` is written to more often than the TTL; `idle` is not. The sweep deletes a
        // conversation in one transaction and its files just after: both are awaited, not
        // assumed (a busy machine may be between the two).
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut i = 1;
        while store.conversation(&idle).await.unwrap().is_some()
            || store.meta(&file).await.unwrap().is_some()
        {
            assert!(tokio::time::Instant::now() < deadline, "never expired");
            store.append_message(&busy, message(i)).await.unwrap();
            store
                .touch(
                    &busy,
                    &LastMessage {
                        role: MessageRole::User,
                        preview: format!("message {i}"),
                        created_at: marie_core::now_millis(),
                    },
                )
                .await
                .unwrap();
            i += 1;
            tokio::time::sleep(ttl / 8).await;
        }
        assert!(store.members(&idle).await.unwrap().is_empty());
        assert!(store.all_messages(&idle).await.unwrap().is_empty());
        assert_eq!(store.used_bytes(&user("alice")).await.unwrap(), 0);
        let again = info_at("idle", "carol", marie_core::now_millis());
        assert!(
            !store.create_conversation(again).await.unwrap(),
            "the id is not used again"
        );
        assert!(store.conversation(&busy).await.unwrap().is_some());
        assert_eq!(store.all_messages(&busy).await.unwrap().len(), i);
        assert!(
            store.conversation(&running).await.unwrap().is_some(),
            "its answer runs"
        );
        // Nothing is left to expire by hand either.
        let left = store
            .list_conversations(&user("alice"), &list_query(10))
            .await
            .unwrap();
        assert_eq!(listed(&left), ["busy", "running"]);
        assert_eq!(store.expire_conversations().await.unwrap(), 0);
    }

    /// `sqlite::memory:` is one connection, kept: it works as a store for one process.
    #[cfg(feature = "sqlite")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_in_memory_sqlite_database_is_one_store() {
        let store = Arc::new(SqlStore::connect("sqlite::memory:").await.unwrap());
        let c = conv("mem");
        store
            .create_conversation(info("mem", "alice"))
            .await
            .unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let (store, c) = (store.clone(), c.clone());
                tokio::spawn(async move { store.append_message(&c, message_after(i, None)).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let history = store.history(&c, query(None, 50)).await.unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].siblings.len(), 8);
    }

    /// Two nodes on one PostgreSQL: what one writes the other reads, and a lease or a
    /// decision taken on one holds on the other.
    #[cfg(feature = "postgres")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_nodes_share_one_postgres() {
        let schema = super::sql_support::Schema::create("two_nodes").await;
        let a = SqlStore::connect(&schema.url()).await.unwrap();
        let b = SqlStore::connect(&schema.url()).await.unwrap();
        let c = conv("shared");
        assert!(
            a.create_conversation(info("shared", "alice"))
                .await
                .unwrap()
        );
        assert!(!b.create_conversation(info("shared", "bob")).await.unwrap());
        b.grant_access(&c, &user("bob")).await.unwrap();
        assert!(a.has_access(&c, &user("bob")).await.unwrap());
        for i in 0..3 {
            let node = if i % 2 == 0 { &a } else { &b };
            node.append_message(&c, message(i)).await.unwrap();
        }
        assert_eq!(
            ids(&b.history(&c, query(None, 50)).await.unwrap()),
            expected(0..3)
        );
        let ttl = Duration::from_secs(60);
        assert!(a.claim_answer(&c, &stream("sa"), ttl).await.unwrap());
        assert!(!b.claim_answer(&c, &stream("sb"), ttl).await.unwrap());
        let pending = approval("shared", "sa");
        a.create_approval(&pending).await.unwrap();
        let id = pending.request.approval_id.clone();
        assert!(matches!(
            b.decide_approval(&id, &decision("bob", true))
                .await
                .unwrap(),
            ApprovalOutcome::Decided(_)
        ));
        assert!(matches!(
            a.decide_approval(&id, &decision("alice", false))
                .await
                .unwrap(),
            ApprovalOutcome::AlreadyDecided(_)
        ));
        a.close().await;
        b.close().await;
        schema.drop_all().await;
    }

    /// A database that does not answer: `connect` fails with `Unavailable` within its
    /// timeout.
    #[cfg(feature = "postgres")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unreachable_database_fails_fast() {
        // Nothing listens on port 1 of the loopback.
        let started = std::time::Instant::now();
        let result = SqlStore::connect_with(
            marie_adapters::SqlConfig::new("postgres://postgres@127.0.0.1:1/postgres")
                .timeout(Duration::from_millis(500)),
        )
        .await;
        assert!(
            matches!(result, Err(StoreError::Unavailable(_))),
            "{result:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }

    /// A store whose pool is closed fails every operation with `Unavailable`, without
    /// hanging.
    #[cfg(feature = "sqlite")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_closed_store_fails_with_unavailable() {
        let dir = TempDir::new("closed");
        let store = SqlStore::connect(&dir.url("marie.db")).await.unwrap();
        store.ping().await.unwrap();
        store.close().await;
        assert!(matches!(
            store.conversation(&conv("c")).await,
            Err(StoreError::Unavailable(_))
        ));
        assert!(matches!(
            store.append_message(&conv("c"), message(0)).await,
            Err(StoreError::Unavailable(_))
        ));
        assert!(matches!(
            store.ping().await,
            Err(StoreError::Unavailable(_))
        ));
    }
}
