//! A user's conversations: the list, titles, settings and the model's request, archive,
//! removing a member, deleting (section 9 of `docs/protocol.md`).

use std::sync::Arc;

use marie_adapters::MemoryFileStore;
use marie_core::{
    Bytes, ConversationChange, EngineConfig, ErrorCode, MessageRole, Notice, TitlePolicy, Upload,
};
use marie_llm::ScriptedProvider;
use marie_testkit::engine::{Harness, admin, conv, harness, harness_with, streamed, user, within};

fn rename(title: &str) -> ConversationChange {
    ConversationChange {
        title: Some(title.into()),
        ..ConversationChange::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_is_most_recently_active_first_with_previews_and_pages() {
    let h = harness(ScriptedProvider::new(["fine"]));
    let alice = user("alice");
    for name in ["c1", "c2", "c3"] {
        h.create(&alice, &conv(name)).await;
    }
    // c1 becomes the most recently active: a message and its answer. Times are in
    // milliseconds and ties go by id (c3 first): the clock must move on first. (A pause for
    // the clock, not a wait for an event.)
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    let sent = h.send(&alice, streamed(&conv("c1"), "hello there")).await;
    h.end(&sent.stream_id).await;

    let page = h
        .engine
        .list_conversations(&alice, None, Some(2), None, false)
        .await
        .unwrap();
    let ids: Vec<_> = page
        .conversations
        .iter()
        .map(|c| c.info.conversation_id.as_str().to_owned())
        .collect();
    assert_eq!(ids[0], "c1", "{ids:?}");
    assert_eq!(ids.len(), 2);
    let last = page.conversations[0].info.last_message.clone().unwrap();
    assert_eq!(last.role, MessageRole::Assistant);
    assert_eq!(last.preview, "fine");
    let cursor = page.next_before.expect("a second page").encode();
    let rest = h
        .engine
        .list_conversations(&alice, Some(&cursor), Some(2), None, false)
        .await
        .unwrap();
    assert_eq!(rest.conversations.len(), 1);
    assert!(rest.next_before.is_none());
    let mut all: Vec<_> = ids.into_iter().collect();
    all.push(rest.conversations[0].info.conversation_id.to_string());
    all.sort();
    assert_eq!(all, ["c1", "c2", "c3"]);

    // Somebody else's list holds none of them; a cursor the server did not give is refused.
    let bob = user("bob");
    let empty = h
        .engine
        .list_conversations(&bob, None, None, None, false)
        .await
        .unwrap();
    assert!(empty.conversations.is_empty());
    let err = h
        .engine
        .list_conversations(&alice, Some("garbage"), None, None, false)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::BadRequest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_answer_names_the_conversation_once_and_tells_the_members() {
    let h = harness(ScriptedProvider::new(["ok"]));
    let (alice, bob) = (user("alice"), user("bob"));
    let room = conv("named");
    h.create(&alice, &room).await;
    h.engine.invite(&alice, &room, &bob.user_id).await.unwrap();
    // The invite is told to the members, Bob among them, so that his list gains it.
    let (notice, users) = within(
        "the invite's conversation_updated",
        h.sink
            .wait_for_notice(|n| matches!(n, Notice::ConversationUpdated(_))),
    )
    .await;
    let Notice::ConversationUpdated(invited) = notice else {
        unreachable!()
    };
    assert_eq!(invited.updated_by.as_ref(), Some(&alice.user_id));
    assert_eq!(invited.title, None);
    assert_eq!(users, vec![alice.user_id.clone(), bob.user_id.clone()]);

    let sent = h
        .send(
            &alice,
            streamed(&room, "  How do   lifetimes work in Rust, really, please?"),
        )
        .await;
    h.end(&sent.stream_id).await;
    let (notice, users) = within(
        "conversation_updated",
        h.sink
            .wait_for_notice(|n| matches!(n, Notice::ConversationUpdated(u) if u.title.is_some())),
    )
    .await;
    let Notice::ConversationUpdated(updated) = notice else {
        unreachable!()
    };
    assert_eq!(
        updated.title.as_deref(),
        Some("How do lifetimes work in Rust,…")
    );
    assert_eq!(updated.updated_by, None);
    assert_eq!(users, vec![alice.user_id.clone(), bob.user_id.clone()]);

    // A member renames it; the next answer does not name it again.
    h.engine
        .update_conversation(&bob, &room, rename("Lifetimes"))
        .await
        .unwrap();
    let again = h.send(&alice, streamed(&room, "and more")).await;
    h.end(&again.stream_id).await;
    let details = h.engine.conversation_details(&alice, &room).await.unwrap();
    assert_eq!(details.info.title.as_deref(), Some("Lifetimes"));
    let named = h
        .sink
        .notices()
        .into_iter()
        .filter(|(n, _)| matches!(n, Notice::ConversationUpdated(u) if u.updated_by.is_none()))
        .count();
    assert_eq!(named, 1, "named once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_first_answer_names_the_conversation_too_and_off_names_none() {
    let failing = ScriptedProvider::new(Vec::<String>::new())
        .fail_on_start(marie_core::ProviderError::Status { status: 400 });
    let h = harness(failing);
    let alice = user("alice");
    let room = conv("fails");
    h.create(&alice, &room).await;
    let sent = h.send(&alice, streamed(&room, "name me anyway")).await;
    h.error(&sent.stream_id).await;
    within(
        "the title",
        h.sink
            .wait_for_notice(|n| matches!(n, Notice::ConversationUpdated(_))),
    )
    .await;
    let details = h.engine.conversation_details(&alice, &room).await.unwrap();
    assert_eq!(details.info.title.as_deref(), Some("name me anyway"));

    let h = harness_with(
        ScriptedProvider::new(["ok"]),
        EngineConfig::default().titles(TitlePolicy::Off),
    );
    h.create(&alice, &room).await;
    let sent = h.send(&alice, streamed(&room, "leave me untitled")).await;
    h.end(&sent.stream_id).await;
    // The answer's end went out before any title would be made; a second answer's end
    // comes after the first's title task would have written.
    let second = h.send(&alice, streamed(&room, "again")).await;
    h.end(&second.stream_id).await;
    let details = h.engine.conversation_details(&alice, &room).await.unwrap();
    assert_eq!(details.info.title, None);
    assert!(h.sink.notices().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asking_the_model_for_a_title_counts_its_tokens_and_cleans_its_answer() {
    let provider = ScriptedProvider::new(["\"Trip", " to Lisbon.\""]);
    let h = harness_with(
        provider,
        EngineConfig::default().titles(TitlePolicy::AskModel),
    );
    let alice = user("alice");
    let room = conv("ask");
    h.create(&alice, &room).await;
    let sent = h.send(&alice, streamed(&room, "plan a trip")).await;
    h.end(&sent.stream_id).await;
    let (notice, _) = within(
        "the title",
        h.sink
            .wait_for_notice(|n| matches!(n, Notice::ConversationUpdated(_))),
    )
    .await;
    let Notice::ConversationUpdated(updated) = notice else {
        unreachable!()
    };
    assert_eq!(updated.title.as_deref(), Some("Trip to Lisbon"));
    let requests = h.provider.requests();
    assert_eq!(requests.len(), 2, "the answer, then the title");
    let asked = &requests[1];
    assert!(asked.tools.is_empty());
    assert_eq!(asked.messages[0].role, MessageRole::System);
    assert_eq!(asked.last_user_message(), Some("plan a trip"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_are_checked_and_reach_the_model() {
    let config = EngineConfig::default()
        .models(["small", "large"])
        .max_system_prompt_chars(100)
        .system_prompt("Be brief.");
    let h = harness_with(ScriptedProvider::new(["ok"]), config);
    let alice = user("alice");
    let room = conv("settings");
    h.create(&alice, &room).await;

    // The default model before any choice.
    let sent = h.send(&alice, streamed(&room, "one")).await;
    h.end(&sent.stream_id).await;
    assert_eq!(h.provider.requests()[0].model.as_deref(), Some("small"));

    let bad = |change: ConversationChange| {
        let engine = h.engine.clone();
        let (alice, room) = (alice.clone(), room.clone());
        async move {
            engine
                .update_conversation(&alice, &room, change)
                .await
                .unwrap_err()
        }
    };
    let err = bad(ConversationChange {
        model: Some("huge".into()),
        ..ConversationChange::default()
    })
    .await;
    assert_eq!(err.code(), ErrorCode::BadRequest);
    assert!(err.client_message().contains("small, large"), "{err}");
    let err = bad(ConversationChange {
        system_prompt: Some("x".repeat(101)),
        ..ConversationChange::default()
    })
    .await;
    assert_eq!(err.code(), ErrorCode::BadRequest);
    assert_eq!(bad(rename("   ")).await.code(), ErrorCode::BadRequest);
    assert_eq!(
        bad(rename(&"t".repeat(201))).await.code(),
        ErrorCode::BadRequest
    );
    assert_eq!(
        bad(ConversationChange::default()).await.code(),
        ErrorCode::BadRequest
    );
    // Not a member: forbidden.
    let err = h
        .engine
        .update_conversation(&user("mallory"), &room, rename("mine"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Forbidden);

    let info = h
        .engine
        .update_conversation(
            &alice,
            &room,
            ConversationChange {
                answer_policy: None,
                title: Some("  Big   one ".into()),
                model: Some("large".into()),
                system_prompt: Some("Answer in French.".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(info.title.as_deref(), Some("Big one"));
    let sent = h.send(&alice, streamed(&room, "two")).await;
    h.end(&sent.stream_id).await;
    let asked = h.provider.requests().pop().unwrap();
    assert_eq!(asked.model.as_deref(), Some("large"));
    let system: Vec<_> = asked
        .messages
        .iter()
        .filter(|m| m.role == MessageRole::System)
        .map(|m| m.content.as_str())
        .collect();
    assert_eq!(system, ["Be brief.", "Answer in French."]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_is_per_user_and_removal_ends_access() {
    let h = harness(ScriptedProvider::new(["ok"]));
    let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
    let room = conv("shared");
    h.create(&alice, &room).await;
    for u in [&bob, &carol] {
        h.engine.invite(&alice, &room, &u.user_id).await.unwrap();
    }
    h.engine
        .archive_conversation(&bob, &room, true)
        .await
        .unwrap();
    let list = |who: marie_core::Identity, archived: bool| {
        let engine = h.engine.clone();
        async move {
            engine
                .list_conversations(&who, None, None, None, archived)
                .await
                .unwrap()
                .conversations
                .len()
        }
    };
    assert_eq!(list(bob.clone(), false).await, 0);
    assert_eq!(list(bob.clone(), true).await, 1);
    assert_eq!(list(alice.clone(), false).await, 1);
    assert!(
        h.engine
            .conversation_details(&bob, &room)
            .await
            .unwrap()
            .archived
    );

    // Bob may not remove carol; nobody removes the owner; carol leaves by herself.
    let err = h
        .engine
        .remove_member(&bob, &room, &carol.user_id)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Forbidden);
    let err = h
        .engine
        .remove_member(&alice, &room, &alice.user_id)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::BadRequest);
    h.engine
        .remove_member(&carol, &room, &carol.user_id)
        .await
        .unwrap();
    h.engine
        .remove_member(&alice, &room, &bob.user_id)
        .await
        .unwrap();
    for gone in [&bob, &carol] {
        let err = h.engine.join(gone, &room).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::Forbidden);
    }
    let removed: Vec<_> = h
        .sink
        .notices()
        .into_iter()
        .filter(|(n, _)| matches!(n, Notice::Removed(_)))
        .map(|(_, users)| users)
        .collect();
    assert_eq!(
        removed,
        vec![vec![carol.user_id.clone()], vec![bob.user_id.clone()]]
    );
    let details = h.engine.conversation_details(&alice, &room).await.unwrap();
    assert_eq!(details.members.len(), 1);
}

async fn upload(h: &Harness, who: &marie_core::Identity, room: &marie_core::ConversationId) {
    h.engine
        .upload(
            who,
            Upload {
                conversation_id: room.clone(),
                name: "notes.txt".into(),
                content_type: None,
                data: Bytes::from_static(b"some notes"),
            },
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_stops_the_answer_and_removes_history_and_files_for_good() {
    let files = Arc::new(MemoryFileStore::new());
    let store_files = files.clone();
    let h = Harness::builder(ScriptedProvider::new(["Hel", "lo"]).hang_at_end())
        .with(move |b| b.files(store_files))
        .build();
    let (alice, bob) = (user("alice"), user("bob"));
    let room = conv("doomed");
    h.create(&alice, &room).await;
    h.engine.invite(&alice, &room, &bob.user_id).await.unwrap();
    upload(&h, &alice, &room).await;
    let kept_room = conv("kept");
    h.create(&alice, &kept_room).await;
    upload(&h, &alice, &kept_room).await;
    let sent = h.send(&alice, streamed(&room, "talk forever")).await;
    h.chunk(&sent.stream_id, 2).await;

    // Only the owner (or an admin) deletes.
    let err = h.engine.delete_conversation(&bob, &room).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::Forbidden);

    within("the delete", h.engine.delete_conversation(&alice, &room))
        .await
        .unwrap();
    // The running answer ended, with one terminal event (it can no longer be stored).
    h.terminal(&sent.stream_id).await;
    let terminals = h
        .stream_events(&sent.stream_id)
        .iter()
        .filter(|e| e.is_terminal())
        .count();
    assert_eq!(terminals, 1);
    assert_eq!(h.engine.running_answers(), 0);
    let (_, told) = h
        .sink
        .wait_for_notice(|n| matches!(n, Notice::ConversationDeleted(_)))
        .await;
    assert_eq!(told, vec![alice.user_id.clone(), bob.user_id.clone()]);

    // Gone for everyone, and the id is not used again.
    for who in [&alice, &bob] {
        assert_eq!(
            h.engine.join(who, &room).await.unwrap_err().code(),
            ErrorCode::NotFound
        );
        assert_eq!(
            h.engine
                .history(who, &room, None, None)
                .await
                .unwrap_err()
                .code(),
            ErrorCode::NotFound
        );
    }
    let err = h
        .engine
        .send(&alice, streamed(&room, "still there?"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
    assert_eq!(
        h.engine
            .list_conversations(&alice, None, None, None, false)
            .await
            .unwrap()
            .conversations
            .len(),
        1,
        "only the kept conversation is listed"
    );
    // Its history is gone from the store, every branch,
    // and its file; the other conversation's file stays.
    use marie_core::History;
    let left = h
        .store
        .history(&room, marie_core::HistoryQuery::newest(100))
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
    use marie_core::FileStore;
    let alice_bytes = files.used_bytes(&alice.user_id).await.unwrap();
    assert_eq!(alice_bytes, "some notes".len() as u64, "one file left");
    // An admin may delete what they do not own.
    h.engine
        .delete_conversation(&admin("root"), &kept_room)
        .await
        .unwrap();
    assert_eq!(files.used_bytes(&alice.user_id).await.unwrap(), 0);
}
