//! Branches: edit, regenerate and switch, and the commands refused.

use std::time::Duration;

use marie_core::{Error, ErrorCode, MessageRole, PromptMessage, ProviderError, SendOutcome};
use marie_llm::ScriptedProvider;
use marie_testkit::engine::{contents, conv, harness, prompt, streamed, user};

/// An edit is a sibling of the question, a regenerated answer a sibling of the answer; the
/// model is shown the active branch only, and nothing is ever deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_and_regenerations_add_siblings_and_the_model_sees_the_active_branch() {
    let h = harness(ScriptedProvider::new(["ok"]));
    let (alice, bob) = (user("alice"), user("bob"));
    let room = conv("room-branches");
    h.create(&alice, &room).await;
    h.engine.invite(&alice, &room, &bob.user_id).await.unwrap();

    let first = h.send(&alice, streamed(&room, "one")).await;
    h.end(&first.stream_id).await;
    let second = h.send(&alice, streamed(&room, "two")).await;
    h.end(&second.stream_id).await;

    // Alice edits "two": the model sees "one", its answer, and the edit.
    let edited = h
        .engine
        .edit(
            &alice,
            &room,
            &second.message_id,
            "two, better".into(),
            true,
        )
        .await
        .expect("the author may edit");
    h.end(&edited.stream_id).await;
    let history = h.history(&alice, &room).await;
    assert_eq!(contents(&history), ["one", "ok", "two, better", "ok"]);
    assert_eq!(
        history[2].siblings,
        vec![second.message_id.clone(), edited.message_id.clone()]
    );
    assert_eq!(history[2].parent_id.as_ref(), Some(&history[1].message_id));
    assert_eq!(history[3].parent_id.as_ref(), Some(&edited.message_id));
    let asked = h.provider.requests().last().unwrap().messages.clone();
    // Alice and Bob share the room: the model is told so, and who wrote what.
    let by_alice = |text: &str| PromptMessage {
        author: Some("alice".into()),
        ..prompt(MessageRole::User, text)
    };
    assert_eq!(
        asked,
        [
            prompt(
                MessageRole::System,
                "This is a group conversation between alice, bob. Each user message is \
                 marked with its author's name; answer the person who asked."
            ),
            by_alice("one"),
            prompt(MessageRole::Assistant, "ok"),
            by_alice("two, better"),
        ]
    );

    // Bob regenerates the last answer: the model sees the same branch again.
    let again = h
        .engine
        .regenerate(&bob, &room, None, true)
        .await
        .expect("any member may regenerate");
    assert_eq!(again.message_id, edited.message_id, "the question answered");
    h.end(&again.stream_id).await;
    assert_eq!(h.provider.requests().last().unwrap().messages, asked);
    let history = h.history(&alice, &room).await;
    assert_eq!(history[3].message_id, again.answer_message_id);
    assert_eq!(
        history[3].siblings,
        vec![
            edited.answer_message_id.clone(),
            again.answer_message_id.clone()
        ]
    );

    // Regenerating the first answer: the model sees "one" only, and the branch moves there.
    let first_again = h
        .engine
        .regenerate(&alice, &room, Some(&first.answer_message_id), true)
        .await
        .unwrap();
    h.end(&first_again.stream_id).await;
    assert_eq!(
        h.provider.requests().last().unwrap().messages,
        [asked[0].clone(), by_alice("one")]
    );
    let history = h.history(&alice, &room).await;
    assert_eq!(contents(&history), ["one", "ok"]);
    assert_eq!(history[1].message_id, first_again.answer_message_id);

    // Back to the edit: down to its newest answer.
    let leaf = h
        .engine
        .switch_branch(&bob, &room, &edited.message_id)
        .await
        .unwrap();
    assert_eq!(leaf, again.answer_message_id);
    assert_eq!(
        contents(&h.history(&alice, &room).await),
        ["one", "ok", "two, better", "ok"]
    );
    // A send goes after the active branch's leaf.
    let third = h.send(&alice, streamed(&room, "three")).await;
    h.end(&third.stream_id).await;
    let history = h.history(&alice, &room).await;
    assert_eq!(history[4].parent_id, Some(leaf));
    assert_eq!(h.provider.requests().last().unwrap().messages.len(), 6); // the group note, then five
    h.assert_one_terminal_per_stream();
}

/// Each bad command gets its own clear error and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_branch_commands_are_refused_and_change_nothing() {
    let h = harness(ScriptedProvider::new(["ok"]).delay(Duration::from_millis(30)));
    let (alice, bob, eve) = (user("alice"), user("bob"), user("eve"));
    let room = conv("room-bad-branches");
    let other = conv("room-other");
    h.create(&alice, &room).await;
    h.create(&alice, &other).await;
    h.engine.invite(&alice, &room, &bob.user_id).await.unwrap();
    assert_eq!(
        h.engine
            .regenerate(&alice, &room, None, true)
            .await
            .unwrap_err()
            .code(),
        ErrorCode::NotFound,
        "nothing to regenerate in an empty conversation"
    );
    let sent = h.send(&alice, streamed(&room, "mine")).await;
    h.end(&sent.stream_id).await;
    let elsewhere = h.send(&alice, streamed(&other, "elsewhere")).await;
    h.end(&elsewhere.stream_id).await;
    let before = h.history(&alice, &room).await;

    let code = |r: Result<SendOutcome, Error>| r.unwrap_err().code();
    let e = &h.engine;
    assert_eq!(
        code(
            e.edit(&bob, &room, &sent.message_id, "his".into(), true)
                .await
        ),
        ErrorCode::Forbidden,
        "only the author edits"
    );
    assert_eq!(
        code(
            e.edit(&alice, &room, &sent.answer_message_id, "x".into(), true)
                .await
        ),
        ErrorCode::BadRequest,
        "an answer is regenerated, not edited"
    );
    assert_eq!(
        code(
            e.edit(&alice, &room, &sent.message_id, "  ".into(), true)
                .await
        ),
        ErrorCode::BadRequest,
        "an empty edit"
    );
    assert_eq!(
        code(
            e.edit(&alice, &room, &elsewhere.message_id, "x".into(), true)
                .await
        ),
        ErrorCode::NotFound,
        "a message of another conversation"
    );
    assert_eq!(
        code(
            e.regenerate(&alice, &room, Some(&sent.message_id), true)
                .await
        ),
        ErrorCode::BadRequest,
        "a question is edited, not regenerated"
    );
    assert_eq!(
        code(e.regenerate(&eve, &room, None, true).await),
        ErrorCode::Forbidden,
        "not a member"
    );
    assert_eq!(
        e.switch_branch(&alice, &room, &elsewhere.message_id)
            .await
            .unwrap_err()
            .code(),
        ErrorCode::NotFound,
        "a switch to a message of another conversation"
    );
    assert_eq!(
        e.switch_branch(&eve, &room, &sent.message_id)
            .await
            .unwrap_err()
            .code(),
        ErrorCode::Forbidden
    );
    // While an answer runs: edits and regenerations are busy, and so is a switch.
    let running = h.send(&alice, streamed(&room, "slow")).await;
    assert_eq!(
        code(e.regenerate(&bob, &room, None, true).await),
        ErrorCode::Busy
    );
    assert_eq!(
        e.switch_branch(&bob, &room, &sent.message_id)
            .await
            .unwrap_err()
            .code(),
        ErrorCode::Busy
    );
    h.end(&running.stream_id).await;
    let after = h.history(&alice, &room).await;
    assert_eq!(
        &after[..2],
        &before[..],
        "the refused commands changed nothing"
    );
    assert_eq!(after.len(), 4);
    h.assert_one_terminal_per_stream();
}

/// An answer that failed before it said anything leaves its question as the leaf:
/// `regenerate` with no message answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regenerate_answers_a_question_whose_answer_failed() {
    let h = harness(
        ScriptedProvider::new(["fine"]).fail_first(1, ProviderError::Unreachable("down".into())),
    );
    let alice = user("alice");
    let room = conv("room-retry");
    h.create(&alice, &room).await;
    let sent = h.send(&alice, streamed(&room, "hello?")).await;
    h.error(&sent.stream_id).await;
    assert_eq!(contents(&h.history(&alice, &room).await), ["hello?"]);
    let again = h
        .engine
        .regenerate(&alice, &room, None, true)
        .await
        .unwrap();
    assert_eq!(again.message_id, sent.message_id);
    h.end(&again.stream_id).await;
    let history = h.history(&alice, &room).await;
    assert_eq!(contents(&history), ["hello?", "fine"]);
    assert_eq!(history[1].parent_id.as_ref(), Some(&sent.message_id));
    assert!(history[1].siblings.is_empty());
    h.assert_one_terminal_per_stream();
}
