//! Joining and inviting: who may join, invite, send and read, admins, conversations that are not
//! created on join, and the running answer a join reports.

use marie_core::{Conversations, EndStatus, EngineConfig, Error, ErrorCode};
use marie_llm::ScriptedProvider;
use marie_testkit::engine::{admin, conv, harness, harness_with, streamed, user};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_creates_on_first_join_and_checks_access() {
    let h = harness(ScriptedProvider::new(["ok"]));
    let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
    let room = conv("room-join");

    let joined = h.engine.join(&alice, &room).await.expect("first join");
    assert!(joined.created);
    assert_eq!(joined.conversation.conversation_id, room);
    assert_eq!(joined.conversation.created_by, alice.user_id);
    assert_eq!(joined.members, vec![alice.user_id.clone()]);
    assert_eq!(joined.active_stream, None);

    let again = h.engine.join(&alice, &room).await.expect("creator rejoins");
    assert!(!again.created);

    // Others are kept out until invited.
    let err = h
        .engine
        .join(&bob, &room)
        .await
        .expect_err("bob is not invited");
    assert!(matches!(err, Error::Forbidden(_)));
    assert_eq!(err.code(), ErrorCode::Forbidden);
    assert_eq!(err.code().as_str(), "forbidden");

    // Only someone with access may invite.
    let err = h
        .engine
        .invite(&bob, &room, &carol.user_id)
        .await
        .expect_err("bob has no access");
    assert_eq!(err.code(), ErrorCode::Forbidden);
    let err = h
        .engine
        .invite(&bob, &room, &bob.user_id)
        .await
        .expect_err("bob cannot invite himself");
    assert_eq!(err.code(), ErrorCode::Forbidden);
    assert_eq!(
        h.engine
            .join(&carol, &room)
            .await
            .expect_err("still out")
            .code(),
        ErrorCode::Forbidden
    );

    h.engine
        .invite(&alice, &room, &bob.user_id)
        .await
        .expect("the creator invites");
    let joined = h.engine.join(&bob, &room).await.expect("bob was invited");
    assert!(!joined.created);
    assert_eq!(joined.conversation.created_by, alice.user_id);
    assert_eq!(
        joined.members,
        vec![alice.user_id.clone(), bob.user_id.clone()]
    );

    // An invited member may invite in turn.
    h.engine
        .invite(&bob, &room, &carol.user_id)
        .await
        .expect("a member invites");
    h.engine
        .join(&carol, &room)
        .await
        .expect("carol was invited");

    // Sending and reading follow the same rule.
    let dave = user("dave");
    assert_eq!(
        h.engine
            .send(&dave, streamed(&room, "hi"))
            .await
            .expect_err("dave has no access")
            .code(),
        ErrorCode::Forbidden
    );
    assert_eq!(
        h.engine
            .history(&dave, &room, None, None)
            .await
            .expect_err("dave has no access")
            .code(),
        ErrorCode::Forbidden
    );
    assert!(h.sink.events().is_empty());
    assert!(h.provider.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_may_join_any_conversation() {
    let h = harness(ScriptedProvider::new(["ok"]));
    let alice = user("alice");
    let root = admin("root");
    let room = conv("room-admin");
    h.create(&alice, &room).await;

    let joined = h.engine.join(&root, &room).await.expect("admins may join");
    assert!(!joined.created);
    assert_eq!(joined.conversation.created_by, alice.user_id);
    // An admin may also send and read without being a member.
    let sent = h.send(&root, streamed(&room, "hello")).await;
    assert_eq!(h.end(&sent.stream_id).await.status, EndStatus::Complete);
    assert_eq!(h.history(&root, &room).await.len(), 2);
    // A non-admin role does not help.
    let err = h
        .engine
        .join(&user("mallory").with_role("moderator"), &room)
        .await
        .expect_err("not an admin");
    assert_eq!(err.code(), ErrorCode::Forbidden);
    h.assert_one_terminal_per_stream();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_create_on_join_unknown_conversations_are_not_found() {
    let h = harness_with(
        ScriptedProvider::new(["ok"]),
        EngineConfig::default().create_on_join(false),
    );
    let alice = user("alice");
    let room = conv("room-missing");

    let err = h.engine.join(&alice, &room).await.expect_err("not created");
    assert!(matches!(err, Error::NotFound(_)));
    assert_eq!(err.code().as_str(), "not_found");
    assert_eq!(
        h.engine
            .join(&admin("root"), &room)
            .await
            .expect_err("admins do not create either")
            .code(),
        ErrorCode::NotFound
    );
    assert_eq!(
        h.engine
            .invite(&alice, &room, &user("bob").user_id)
            .await
            .expect_err("nothing to invite to")
            .code(),
        ErrorCode::NotFound
    );
    assert_eq!(
        h.engine
            .send(&alice, streamed(&room, "hi"))
            .await
            .expect_err("nothing to send to")
            .code(),
        ErrorCode::NotFound
    );
    assert!(h.store.conversation(&room).await.expect("store").is_none());
    assert!(h.sink.events().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_reports_the_running_answer() {
    let h = harness(ScriptedProvider::new(["a", "b"]).hang_at_end());
    let (alice, bob) = (user("alice"), user("bob"));
    let room = conv("room-active");
    h.create(&alice, &room).await;
    h.engine
        .invite(&alice, &room, &bob.user_id)
        .await
        .expect("invite");

    let sent = h.send(&alice, streamed(&room, "go")).await;
    h.chunk(&sent.stream_id, 2).await;
    let joined = h.engine.join(&bob, &room).await.expect("bob joins");
    let active = joined.active_stream.expect("an answer is running");
    assert_eq!(active.stream_id, sent.stream_id);
    assert_eq!(active.seq, 2);

    h.engine
        .cancel(&bob, &room, None)
        .await
        .expect("a member cancels");
    assert_eq!(h.end(&sent.stream_id).await.status, EndStatus::Cancelled);
    assert_eq!(
        h.engine
            .join(&bob, &room)
            .await
            .expect("join")
            .active_stream,
        None
    );
    h.assert_one_terminal_per_stream();
}
